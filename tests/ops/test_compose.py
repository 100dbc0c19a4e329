"""docker-compose.yml cannot run here (no Docker): check what can be checked without it."""

from __future__ import annotations

from pathlib import Path

import yaml

from sanctiongate.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_healthchecks() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "worker", "api", "prometheus", "grafana"} <= services.keys()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("kafka", "redis", "worker", "api", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], f"{name} has no healthcheck"
    for name in ("worker", "api", "topics"):
        assert services[name]["build"] == ".", f"{name} is built from the project's Dockerfile"
    assert (REPO / "Dockerfile").is_file()


def test_sanctiongate_env_names_exist_in_settings() -> None:
    fields = set(Settings.model_fields)
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("SANCTIONGATE_"):
                field = key.removeprefix("SANCTIONGATE_").lower()
                assert field in fields, f"{name}: {key} is not a Settings field"


def test_published_ports_stay_on_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_prometheus_scrapes_the_compose_services_on_their_configured_ports() -> None:
    services = compose()["services"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.compose.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    api_port = services["api"]["environment"]["SANCTIONGATE_API_PORT"]
    worker_port = services["worker"]["environment"]["SANCTIONGATE_WORKER_WEB_PORT"]
    assert targets == {f"api:{api_port}", f"worker:{worker_port}"}
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
