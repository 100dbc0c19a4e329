"""All configuration, from the environment (prefix ``SANCTIONGATE_``), with local defaults.

Every network listener defaults to loopback: binding wider is an explicit operator decision.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANCTIONGATE_", env_file=None, extra="ignore")

    # --- services -------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The port variables of deploy/stack.sh: given alone, they move the loopback defaults
    # above, so one `SANCTIONGATE_KAFKA_PORT=19192 SANCTIONGATE_REDIS_PORT=16479 make up` starts
    # the broker, Redis and every process on the same ports.
    kafka_port: int | None = None
    redis_port: int | None = None

    # --- topics (SPEC §3 default names) ----------------------------------------------------
    topic_list_changes: str = "sanction.list.changes"
    topic_measures: str = "sanction.measures"
    topic_approvals: str = "approval.events"
    topic_decisions: str = "sanction.decisions"
    topic_feedback: str = "sanction.feedback"
    topic_alerts: str = "sanction.alerts"
    topic_rejected: str = "sanction.rejected"
    topic_audit: str = "sanction.audit"
    topic_partitions: int = 4

    # --- worker ----------------------------------------------------------------------------
    app_id: str = "sanctiongate"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    ingest_batch_size: int = 2000
    ingest_batch_timeout_ms: int = 20

    # --- index -----------------------------------------------------------------------------
    index_prefix: str = "sg"
    lookback_days: int = 365
    feedback_sla_seconds: float = 24 * 3600
    monitor_interval_seconds: float = 1.0
    serve_during_rebuild: bool = Field(
        default=False,
        description="Answer checks from the current generation while a requested rebuild runs",
    )
    decision_ttl_seconds: int = Field(
        default=90 * 24 * 3600,
        description="How long a request's decision is kept (approval_despite_block, replays)",
    )

    # --- HTTP API --------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_workers: int = 1
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_subjects: int = 10_000
    keys_file: Path = Path(".run/dev/api-keys.json")
    idempotency_ttl_seconds: int = 7 * 24 * 3600

    # --- catalogue ---------------------------------------------------------------------------
    measures_file: Path | None = Field(
        default=None, description="Measure catalogue to load at start; None = the shipped default"
    )

    # --- local stack -------------------------------------------------------------------------
    run_dir: Path = Path(".run/dev")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _ports_move_the_defaults(self) -> Settings:
        if self.kafka_port is not None and "kafka_bootstrap" not in self.model_fields_set:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        if self.redis_port is not None and "redis_url" not in self.model_fields_set:
            self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
