"""``as_of.lag_seconds``: how far behind the index may be, from the workers' heartbeats.

A caller decides on a check's freshness by it (SPEC §4), so it may overstate, never
understate: a worker that stopped beating has stopped catching up.
"""

from __future__ import annotations

import orjson
import pytest

from sanctiongate.checks import WORKER_HEARTBEAT_FRESH_SECONDS, index_lag_seconds
from sanctiongate.index import IndexMeta

NOW = 1_800_000_000.0


def meta(**workers: dict) -> IndexMeta:
    fields = {f"w:{name}": orjson.dumps(report).decode() for name, report in workers.items()}
    return IndexMeta(gen="g", state="ready", newest_event_time=None, measures_rev=0, fields=fields)


def test_no_worker_ever_reported() -> None:
    assert index_lag_seconds(meta(), NOW) is None


def test_a_beating_worker_reports_its_own_lag() -> None:
    beating = {"ts": NOW - 0.4, "lag_seconds": 2.5, "every": 1.0}
    assert index_lag_seconds(meta(a=beating), NOW) == 2.5


@pytest.mark.parametrize("silent", [5.0, 20.0, WORKER_HEARTBEAT_FRESH_SECONDS - 0.1])
def test_a_silent_worker_ages_its_last_report(silent: float) -> None:
    stopped = {"ts": NOW - silent, "lag_seconds": 0.0, "every": 1.0}
    assert index_lag_seconds(meta(a=stopped), NOW) == pytest.approx(silent - 1.0)


def test_the_slowest_live_worker_counts() -> None:
    caught_up = {"ts": NOW - 0.2, "lag_seconds": 0.0, "every": 1.0}
    silent = {"ts": NOW - 12.0, "lag_seconds": 0.5, "every": 1.0}
    assert index_lag_seconds(meta(a=caught_up, b=silent), NOW) == pytest.approx(11.5)


def test_with_no_live_worker_it_is_the_time_since_the_last_beat() -> None:
    gone = {"ts": NOW - 300.0, "lag_seconds": 0.0, "every": 1.0}
    older = {"ts": NOW - 900.0, "lag_seconds": 0.0, "every": 1.0}
    assert index_lag_seconds(meta(a=gone, b=older), NOW) == 300.0


def test_a_report_without_its_interval_assumes_the_default_beat() -> None:
    assert index_lag_seconds(meta(a={"ts": NOW - 10.0, "lag_seconds": 1.0}), NOW) == 10.0
