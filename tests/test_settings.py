"""Settings from the environment: the port variables of deploy/stack.sh move the defaults."""

from __future__ import annotations

import pytest

from sanctiongate.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP", "REDIS_URL", "KAFKA_PORT", "REDIS_PORT"):
        monkeypatch.delenv(f"SANCTIONGATE_{name}", raising=False)


@pytest.mark.parametrize(
    ("ports", "kafka", "redis"),
    [
        ({}, "127.0.0.1:9092", "redis://127.0.0.1:6379/0"),
        (
            {"KAFKA_PORT": "19192", "REDIS_PORT": "16479"},
            "127.0.0.1:19192",
            "redis://127.0.0.1:16479/0",
        ),
    ],
)
def test_stack_ports_alone_move_the_loopback_defaults(
    monkeypatch: pytest.MonkeyPatch, ports: dict[str, str], kafka: str, redis: str
) -> None:
    for name, value in ports.items():
        monkeypatch.setenv(f"SANCTIONGATE_{name}", value)
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.redis_url) == (kafka, redis)


def test_an_explicit_address_wins_over_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANCTIONGATE_KAFKA_PORT", "19192")
    monkeypatch.setenv("SANCTIONGATE_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    monkeypatch.setenv("SANCTIONGATE_REDIS_PORT", "16479")
    assert Settings().kafka_bootstrap == "kafka.internal:9092"
    assert Settings(redis_url="redis://cache:6379/2").redis_url == "redis://cache:6379/2"
