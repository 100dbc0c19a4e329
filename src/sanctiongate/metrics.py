"""Prometheus metrics of SPEC §7, for the API processes and the workers.

Two ways of exposing them:

- a worker is one process: its ``/metrics`` shows its own registry;
- the API may run as several uvicorn processes (``--workers N``): the CLI points
  ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any process imports
  ``prometheus_client`` (:mod:`sanctiongate.multiproc`); each process then writes its samples
  to files there, and ``/metrics`` on any of them reports the sum over all of them.

Gauges say how they combine across processes (``multiprocess_mode``): those read from the shared
index take the most recent value any process read, lags take the largest.

No personal identifier ever goes into a label: every label value passes through the same mask
as the logs, so a caller-supplied value shaped like an ID number cannot leak through a label.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric
from redis.exceptions import RedisError

from .domain.identifiers import mask_identifier
from .logs import mask_id_numbers

if TYPE_CHECKING:
    from .index import SanctionIndex

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# prometheus_client picks its value store when first imported. Should anything have imported
# it before the CLI set the directory, pick again, or every API process would count alone.
if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
    values.ValueClass = values.get_value_class()


# In a label, any long run of digits is masked, even glued to letters (``c110105...`` is a valid
# matter-category slug): no label we define legitimately holds one.
_LONG_DIGITS = re.compile(r"\d{15,}[\dXx]?")


def mask_label(value: object) -> str:
    text = mask_id_numbers(str(value))
    return _LONG_DIGITS.sub(lambda m: mask_identifier(m.group(0)), text)


def _masked_labels(values_: tuple[object, ...], kwargs: dict[str, object]) -> tuple[tuple, dict]:
    return tuple(mask_label(v) for v in values_), {k: mask_label(v) for k, v in kwargs.items()}


class _MaskedCounter(Counter):
    def labels(self, *labelvalues: object, **labelkwargs: object):  # type: ignore[no-untyped-def]
        args, kwargs = _masked_labels(labelvalues, labelkwargs)
        return super().labels(*args, **kwargs)


class _MaskedGauge(Gauge):
    def labels(self, *labelvalues: object, **labelkwargs: object):  # type: ignore[no-untyped-def]
        args, kwargs = _masked_labels(labelvalues, labelkwargs)
        return super().labels(*args, **kwargs)


class _MaskedHistogram(Histogram):
    def labels(self, *labelvalues: object, **labelkwargs: object):  # type: ignore[no-untyped-def]
        args, kwargs = _masked_labels(labelvalues, labelkwargs)
        return super().labels(*args, **kwargs)


_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_PROPAGATION_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --- SPEC §7 ---------------------------------------------------------------------------------
checks_total = _MaskedCounter(
    "sanctiongate_checks_total", "Checks decided", ["channel", "decision", "matter_category"]
)
check_duration_seconds = _MaskedHistogram(
    "sanctiongate_check_duration_seconds",
    "Time to decide a check",
    ["channel"],
    buckets=_LATENCY_BUCKETS,
)
list_changes_total = _MaskedCounter(
    "sanctiongate_list_changes_total", "List changes by outcome", ["op", "result"]
)
change_propagation_seconds = Histogram(
    "sanctiongate_change_propagation_seconds",
    "From a list change's produce time (or event time) to visible in the index",
    buckets=_PROPAGATION_BUCKETS,
)
index_entries = _MaskedGauge(
    "sanctiongate_index_entries",
    "Entries in the index (not removed), read from the shared index",
    ["polarity", "list_type"],
    multiprocess_mode="livemostrecent",
)
index_lag_seconds = Gauge(
    "sanctiongate_index_lag_seconds",
    "How far the index is behind its topic (a worker: its own lag; the API: the largest of all)",
    multiprocess_mode="livemostrecent",
)
rejected_total = _MaskedCounter(
    "sanctiongate_rejected_total",
    "Messages sent to the dead-letter topic",
    ["source_topic", "code"],
)
alerts_total = _MaskedCounter("sanctiongate_alerts_total", "Monitoring alerts raised", ["type"])
feedback_total = _MaskedCounter(
    "sanctiongate_feedback_total", "Execution feedback received", ["outcome"]
)
feedback_overdue = Gauge(
    "sanctiongate_feedback_overdue",
    "Block/review decisions still without feedback past the SLA",
    multiprocess_mode="livemostrecent",
)
identifier_anomalies_total = _MaskedCounter(
    "sanctiongate_identifier_anomalies_total",
    "Well-formed identifiers that fail their check character, kept and flagged",
    ["source", "kind"],
)

# --- operations ------------------------------------------------------------------------------
consumer_lag_messages = _MaskedGauge(
    "sanctiongate_consumer_lag_messages",
    "Messages not yet consumed, per topic and consumer group",
    ["topic", "group"],
    multiprocess_mode="max",
)
index_rebuilding = Gauge(
    "sanctiongate_index_rebuilding",
    "1 while the index cannot serve because it is being (or waits to be) rebuilt",
    multiprocess_mode="livemostrecent",
)
index_available = Gauge(
    "sanctiongate_index_available",
    "1 when the index can answer checks (Redis reachable, a generation serving)",
    multiprocess_mode="livemostrecent",
)
source_last_change_timestamp_seconds = _MaskedGauge(
    "sanctiongate_source_last_change_timestamp_seconds",
    "Unix time this process last received a list change from the source",
    ["source"],
    multiprocess_mode="max",
)

ALL_METRICS = (
    checks_total,
    check_duration_seconds,
    list_changes_total,
    change_propagation_seconds,
    index_entries,
    index_lag_seconds,
    rejected_total,
    alerts_total,
    feedback_total,
    feedback_overdue,
    identifier_anomalies_total,
    consumer_lag_messages,
    index_rebuilding,
    index_available,
    source_last_change_timestamp_seconds,
)

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exposed_names() -> frozenset[str]:
    """Every sample name these metrics expose (``..._total``, ``..._bucket``, …).

    Dashboards and alert rules are checked against this set, so a renamed metric fails a test
    instead of silently flattening a panel.
    """
    return frozenset(
        family.name + suffix
        for metric in ALL_METRICS
        for family in metric.describe()
        for suffix in _SAMPLE_SUFFIXES[family.type]
    )


# A check's series, looked up (and their labels masked) once, not on every check.
@lru_cache(maxsize=16)
def check_duration(channel: str) -> Histogram:
    return check_duration_seconds.labels(channel=channel)


@lru_cache(maxsize=4096)
def check_count(channel: str, decision: str, matter_category: str) -> Counter:
    return checks_total.labels(channel=channel, decision=decision, matter_category=matter_category)


class TurnTally:
    """Checks' count and duration, written to their series once per turn of the event loop.

    In the API's multiprocess mode every ``inc`` of a series writes to its memory-mapped file
    under a lock, with a ``getpid`` system call to notice a fork: three of them per check
    (the counter, the histogram's bucket and its sum) cost 5% of an API process's CPU at
    peak. The checks answered in one turn (one wave of requests under load; a lone one alone)
    are tallied here and written when the turn ends, a few for many. A scrape sees a check
    once the loop has finished the turn that answered it: before any later request of the
    same process is even read.
    """

    def __init__(self) -> None:
        self._durations: dict[str, list[float]] = {}
        self._counts: Tally[tuple[str, str, str]] = Tally()
        self._due = False

    def check(self, channel: str, decision: str, matter_category: str, seconds: float) -> None:
        durations = self._durations.get(channel)
        if durations is None:
            durations = self._durations[channel] = []
        durations.append(seconds)
        self._counts[channel, decision, matter_category] += 1
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self.write)

    def write(self) -> None:
        durations, counts = self._durations, self._counts
        self._durations, self._counts, self._due = {}, Tally(), False
        for channel, amounts in durations.items():
            observe_all(check_duration(channel), amounts)
        for labels, count in counts.items():
            check_count(*labels).inc(count)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe`` of each amount, taking each touched bucket's lock and the sum's
    once, not twice per amount (~3 µs an observation: once per list change applied, on the
    ingest hot path). prometheus_client has no bulk observe, so this counts into the bucket
    ``observe`` would (the first upper bound at or above the amount) through the same
    attributes (tests/ops/test_metrics.py compares the two)."""
    if amounts:
        bounds = histogram._upper_bounds
        _add(histogram, Tally(bisect_left(bounds, a) for a in amounts), sum(amounts))


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``count`` observations of one ``amount`` (each check of a stream batch took the batch's
    time), as :func:`observe_all` would count them; the sum is ``amount * count`` (rounded
    once, not ``count`` times). tests/test_stream_wire.py holds it to ``count`` observations."""
    if count > 0:
        _add(histogram, {bisect_left(histogram._upper_bounds, amount): count}, amount * count)


def _add(histogram: Histogram, per_bucket: Mapping[int, int], total: float) -> None:
    """Counts into buckets (by index) and the sum: the fields ``Histogram.observe`` updates."""
    histogram._raise_if_not_observable()
    for bucket, count in per_bucket.items():
        histogram._buckets[bucket].inc(count)
    histogram._sum.inc(total)


def source_seen(source: str, at: float | None = None) -> None:
    """A list change from ``source`` arrived (feeds the silent-source alert)."""
    source_last_change_timestamp_seconds.labels(source=source).set(at or time.time())


_entry_labels_seen: set[tuple[str, str]] = set()


async def refresh_index_gauges(index: SanctionIndex, *, with_lag: bool) -> None:
    """Read the shared index state into the gauges, just before a scrape.

    Entry counts, availability and rebuild state live in Redis, not in any one process, so
    whichever process is scraped reads them. ``with_lag``: the API reports the index lag as
    callers see it in ``as_of``; a worker keeps reporting its own lag from its heartbeat.
    """
    from .checks import index_lag_seconds as lag_of

    try:
        meta = await index.read_meta()
        counts = await index.counts(meta.gen) if meta.gen else {}
    except (RedisError, OSError):
        index_available.set(0)
        return
    index_available.set(1 if meta.ready else 0)
    index_rebuilding.set(0 if meta.ready else 1)
    for labels in _entry_labels_seen - counts.keys():
        index_entries.labels(*labels).set(0)  # a list type emptied out: say 0, not its old size
    for (polarity, list_type), count in counts.items():
        index_entries.labels(polarity, list_type).set(count)
    _entry_labels_seen.update(counts)
    if with_lag:
        lag = lag_of(meta, time.time())
        if lag is not None:
            index_lag_seconds.set(lag)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The text exposition: this process's registry, or the sum over all API processes."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    summed = generate_latest(registry)
    present = {family.name for family in registry.collect()}
    # The multiprocess collector knows only what some process has written; declare the rest
    # (HELP and TYPE, no samples) so every SPEC §7 name is on every /metrics.
    declared = CollectorRegistry()
    declared.register(_Declared([f for f in _families() if f.name not in present]))
    return summed + generate_latest(declared), CONTENT_TYPE_LATEST


class _Declared:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _families() -> list[Metric]:
    return [
        Metric(family.name, family.documentation, family.type)
        for family in REGISTRY.collect()
        if family.name.startswith("sanctiongate_")
    ]


def process_exiting() -> None:
    """Drop this process's ``live*`` gauges from the shared directory; its counts stay summed."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)
