"""The Grafana dashboard and provisioning: valid, and every panel queries metrics we export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from sanctiongate import metrics
from tests.ops.spec_names import SPEC_SAMPLES

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "sanctiongate.json"
METRIC = re.compile(r"\bsanctiongate_[a-z_]+\b")
# The metric names of SPEC §7, as exposed (counters end in _total, histograms in _bucket).
SPEC_METRICS = SPEC_SAMPLES


def panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    [source] = datasource["datasources"]
    for panel in panels():
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == source["uid"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_every_panel_queries_metrics_that_metrics_py_defines() -> None:
    exported = metrics.exposed_names()
    for panel in panels():
        for target in panel["targets"]:
            names = METRIC.findall(target["expr"])
            assert names or "up{" in target["expr"], f"{panel['title']!r}: {target['expr']}"
            for name in names:
                assert name in exported, f"panel {panel['title']!r} queries unknown {name}"


def test_dashboard_shows_every_spec_metric() -> None:
    shown = {name for p in panels() for t in p["targets"] for name in METRIC.findall(t["expr"])}
    assert shown >= SPEC_METRICS, f"missing from the dashboard: {SPEC_METRICS - shown}"


def test_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/sanctiongate.yml").read_text())
    [entry] = provider["providers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{entry['options']['path']}:ro" in mounts
