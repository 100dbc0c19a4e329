"""Metrics across processes (prometheus_client multiprocess mode) and labels without ID numbers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from sanctiongate import metrics
from sanctiongate.multiproc import ENV, prepare_api_metrics_dir
from tests.ids import id_number
from tests.ops.spec_names import SPEC_NAMES, SPEC_SAMPLES

# One "API process": counts checks and reads the index size, as a request and a scrape would.
_PROCESS = """
import sys
from sanctiongate import metrics
n, entries = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    metrics.checks_total.labels("http", "pass", "bidding").inc()
    metrics.check_duration_seconds.labels("http").observe(0.004)
metrics.index_entries.labels("black", "dishonest_judgment_debtor").set(entries)
"""
_SCRAPE = """
import sys
from sanctiongate import metrics
sys.stdout.write(metrics.exposition()[0].decode())
"""


def run(code: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_any_api_process_reports_the_sum_over_all(tmp_path: Path) -> None:
    env = {**os.environ, ENV: str(tmp_path)}
    run(_PROCESS, "3", "10", env=env)
    run(_PROCESS, "4", "12", env=env)  # read the index later: its value is the one reported
    got = samples(run(_SCRAPE, env=env))
    check = (("channel", "http"), ("decision", "pass"), ("matter_category", "bidding"))
    assert got[("sanctiongate_checks_total", check)] == 7
    assert got[("sanctiongate_check_duration_seconds_count", (("channel", "http"),))] == 7
    entries = (("list_type", "dishonest_judgment_debtor"), ("polarity", "black"))
    assert got[("sanctiongate_index_entries", entries)] == 12


def test_every_spec_name_is_on_an_api_scrape_before_anything_happened(tmp_path: Path) -> None:
    env = {**os.environ, ENV: str(tmp_path)}
    run(_PROCESS, "1", "1", env=env)
    text = run(_SCRAPE, env=env)
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert set(SPEC_NAMES) <= declared, set(SPEC_NAMES) - declared
    families = list(text_string_to_metric_families(text))  # still valid exposition
    assert len({f.name for f in families}) == len(families), "a family is declared twice"
    assert (
        samples(text)[
            (
                "sanctiongate_checks_total",
                (("channel", "http"), ("decision", "pass"), ("matter_category", "bidding")),
            )
        ]
        == 1
    )


def test_prepare_clears_the_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "")  # so that monkeypatch restores the variable afterwards
    monkeypatch.delenv(ENV)
    first = prepare_api_metrics_dir(tmp_path, 8080)
    assert first == (tmp_path / "prometheus" / "api-8080").resolve()
    assert os.environ[ENV] == str(first)
    (first / "counter_1234.db").write_bytes(b"old counts")
    (first / "keep.txt").write_text("not ours")
    again = prepare_api_metrics_dir(tmp_path, 8080)
    assert again == first and not (first / "counter_1234.db").exists()
    assert (first / "keep.txt").exists()
    other = prepare_api_metrics_dir(tmp_path / "elsewhere", 9000)
    assert other == first, "an operator's PROMETHEUS_MULTIPROC_DIR wins"


def test_label_values_never_carry_an_id_number() -> None:
    person = id_number()
    metrics.checks_total.labels(channel="http", decision="pass", matter_category=f"c{person}").inc()
    metrics.identifier_anomalies_total.labels(person, "id_number").inc()
    text = metrics.exposition()[0].decode()
    assert person not in text
    assert person[:6] + "********" + person[-4:] in text


def test_spec_metric_names_are_exported() -> None:
    spec = {
        *SPEC_SAMPLES,
        "sanctiongate_consumer_lag_messages",
        "sanctiongate_source_last_change_timestamp_seconds",
    }
    assert set(spec) <= metrics.exposed_names()


def test_observing_all_at_once_counts_as_observing_each() -> None:
    buckets = (0.005, 0.01, 0.1, 1.0)
    amounts = [0.0, 0.005, 0.0050001, 0.01, 0.05, 0.1, 0.7, 1.0, 3.0, 250.0, 0.05]
    one_by_one = Histogram("one_by_one_seconds", "each", buckets=buckets, registry=None)
    all_at_once = Histogram("all_at_once_seconds", "all", buckets=buckets, registry=None)
    for amount in amounts:
        one_by_one.observe(amount)
    metrics.observe_all(all_at_once, amounts)
    metrics.observe_all(all_at_once, [])
    each, together = (_samples(h) for h in (one_by_one, all_at_once))
    assert together.pop("_sum") == pytest.approx(each.pop("_sum"))  # added in another order
    assert together == each  # every bucket and the count
    assert each["_bucket", "0.005"] == 2 and each["_bucket", "+Inf"] == 11


def _samples(histogram: Histogram) -> dict:
    [family] = histogram.collect()
    return {
        (s.name.removeprefix(family.name), s.labels["le"])
        if "le" in s.labels
        else s.name.removeprefix(family.name): s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }


async def test_a_turns_checks_reach_their_series_when_the_turn_ends() -> None:
    def count(decision: str) -> float:
        return metrics.check_count("http", decision, "turn_tally_test")._value.get()

    def observed() -> float:
        return _samples(metrics.check_duration("http"))["_count"]

    before = count("block"), count("pass"), observed()
    tally = metrics.TurnTally()
    for decision in ("block", "pass", "pass"):
        tally.check("http", decision, "turn_tally_test", 0.002)
    assert (count("block"), count("pass"), observed()) == before  # the turn is not over
    await asyncio.sleep(0)
    assert (count("block"), count("pass"), observed()) == (
        before[0] + 1,
        before[1] + 2,
        before[2] + 3,
    )
    tally.check("http", "pass", "turn_tally_test", 0.002)  # a later turn: written again
    await asyncio.sleep(0)
    assert count("pass") == before[1] + 3
