"""The Prometheus configuration and alert rules, checked by promtool itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sanctiongate import metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RUNBOOK = REPO / "docs" / "runbook.md"
METRIC = re.compile(r"\bsanctiongate_[a-z_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_config_is_valid(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_name_only_metrics_we_export() -> None:
    exported = metrics.exposed_names()
    for rule in alert_rules():
        for name in METRIC.findall(rule["expr"]):
            assert name in exported, f"{rule['alert']} names {name}, which metrics.py lacks"


def test_every_alert_is_unit_tested_and_in_the_runbook() -> None:
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "rules.test.yml").read_text()))
    runbook = RUNBOOK.read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert name in tested, f"{name} has no case in rules.test.yml"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        assert anchor == name.lower()
        assert f"## {name}" in runbook, f"docs/runbook.md has no section for {name}"


def test_scrape_targets_are_the_settings_defaults() -> None:
    from sanctiongate.settings import Settings

    defaults = Settings(_env_file=None)
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["sanctiongate-api"] == [f"{defaults.api_host}:{defaults.api_port}"]
    assert targets["sanctiongate-worker"] == [
        f"{defaults.worker_web_host}:{defaults.worker_web_port}"
    ]
