"""The cyclic garbage collector, tuned for batches: one setting for workers and API processes.

A handled batch keeps tens of thousands of objects alive at once (events, subjects, decisions,
their JSON) while it allocates; with CPython's default thresholds (700, 10, 10) young
collections run every 700 allocations, promote those live objects, and promoted objects soon
trigger full collections that walk every object of the process (the record and identifier
caches, faust, the loaded schemas). Measured deciding approval events against the bench
Redis: ~270 µs CPU per event with the defaults, ~195 µs with the thresholds below. Nearly all
of a batch's garbage is freed by reference counting anyway; what the collector is for (cycles)
it still finds, just less often. The same held for the API (a 10,000-subject batch allocates
about a million objects: with the defaults, collection doubled its CPU) and for ingest (decode +
apply of a list change ~145 → ~85 µs CPU).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Young collections every 50,000 allocations (not 700); a middle one every 20 of those; a full
# one after 100 middle ones (CPython also waits until a quarter of the old objects are new).
THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Call once a process has started (worker, API process): what exists then lives as long as
    the process, so ``gc.freeze`` keeps full collections from walking it again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


# Batches that overlap without a gap (an API under a steady stream of big batches) would keep
# the collector off for good, and cycles would pile up: past this long, a batch that leaves
# while others are in hand runs a young collection (what is young then: a few batches' worth).
LONGEST_PAUSE_SECONDS = 1.0


class _Pauses:
    """Batches in hand that asked for no collection (they overlap: one task awaits Redis while
    another handles), whether the collector ran before the first of them, and since when it
    has not run."""

    count = 0
    was_enabled = False
    since = 0.0


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection while a batch is in hand; the collector runs again after it.

    Nearly everything a batch allocates (events, decisions, their JSON) lives until the batch
    ends and is then freed by reference counting: a collection in between walks tens of
    thousands of live objects and promotes them, only for them to be freed anyway. Measured in
    ``bench/profile_decide.py``: the collector took ~11 µs of the ~95 µs a decided event cost,
    ~4 µs with this pause, and the event's CPU went down ~5.5 µs. Collections are only put
    off, not lost: CPython keeps counting allocations while it is disabled, so the first
    allocation after the batch starts a young collection, when the batch's objects are gone.
    Cycles made meanwhile wait for the batch (a fraction of a second; as long as a Redis
    call's timeout at worst), also in the other agents of the process, which run while this
    batch awaits its I/O.
    """
    if _Pauses.count == 0:
        _Pauses.was_enabled = gc.isenabled()
        _Pauses.since = time.monotonic()
        gc.disable()
    _Pauses.count += 1
    try:
        yield
    finally:
        _Pauses.count -= 1
        if _Pauses.was_enabled:
            if _Pauses.count == 0:
                gc.enable()
            elif time.monotonic() - _Pauses.since > LONGEST_PAUSE_SECONDS:
                _Pauses.since = time.monotonic()
                gc.collect(0)
