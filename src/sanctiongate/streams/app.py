"""The faust application: the frame that runs every agent of a worker.

Faust gives the worker its lifecycle (start, stop, signals), its timers and its web server.
The agents on high-volume topics read batches with aiokafka inside that lifecycle
(:mod:`.consumer`), since per-event faust iteration cannot reach the ingest goal.
"""

from __future__ import annotations

import logging
import time

import faust
import mode
from faust.contrib.asgi import serve_asgi
from redis.exceptions import RedisError

from .. import metrics
from ..heap import tune_collector
from ..index.ledger import Ledger
from ..logs import dict_config
from ..settings import Settings, get_settings
from .approvals import ApprovalComparison
from .consumer import BatchConsumer
from .ingest import GenerationWatch, ListChangeIngest
from .measures import MeasureIngest
from .monitor import FeedbackIngest, Monitor, RetroactiveComparison
from .rebuild import Rebuilder
from .runtime import Runtime
from .web import worker_web_app

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    # faust keeps a data directory even with memory stores: under the run dir, not the cwd.
    datadir = settings.run_dir / "faust" / f"{settings.app_id}-data"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        autodiscover=False,
        web_enabled=True,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        topic_partitions=settings.topic_partitions,
        producer_acks=-1,
        datadir=str(datadir),
        logging_config=dict_config(),  # JSON lines, masked, at the level the CLI set
        # A worker killed without a goodbye holds its group until its session expires, and a
        # restarted worker starts its agents only after that group rebalanced (faust's 60 s
        # default would stall ingest for a minute); the batch consumers use aiokafka's 10 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    runtime = Runtime.create(settings)
    rebuilder = Rebuilder(settings, runtime.index, runtime.worker_id)
    ledger = Ledger(
        runtime.redis,
        runtime.index.layout,
        lookback_seconds=settings.lookback_days * 86400,
        feedback_sla_seconds=settings.feedback_sla_seconds,
        decision_ttl_seconds=settings.decision_ttl_seconds,
    )
    retroactive = RetroactiveComparison(runtime, ledger)
    monitor = Monitor(runtime, ledger, retroactive)
    consumers: list[BatchConsumer] = []

    def consumer_for(topic: str, handler, idle=None, positions=None) -> BatchConsumer:  # type: ignore[no-untyped-def]
        return BatchConsumer(
            bootstrap=settings.kafka_bootstrap,
            topic=topic,
            group=f"{settings.app_id}-{topic}",
            handler=handler,
            client_id=f"{settings.app_id}-{runtime.worker_id}",
            batch_size=settings.ingest_batch_size,
            timeout_ms=settings.ingest_batch_timeout_ms,
            idle=idle,
            positions=positions,
        )

    @app.service
    class Agents(mode.Service):
        """Starts the batch agents once faust is up, stops them before it goes down."""

        async def on_start(self) -> None:
            await runtime.start()
            list_watch = GenerationWatch(runtime, rebuilder, settings.topic_list_changes)
            ingest = ListChangeIngest(runtime, list_watch)
            ingest.on_applied.append(retroactive.on_applied)
            measure_watch = GenerationWatch(runtime, rebuilder, settings.topic_measures)
            consumers.extend(
                [
                    consumer_for(settings.topic_list_changes, ingest, list_watch.idle, list_watch),
                    consumer_for(
                        settings.topic_measures,
                        MeasureIngest(runtime, measure_watch).handle,
                        positions=measure_watch,
                    ),
                    consumer_for(
                        settings.topic_approvals, ApprovalComparison(runtime, ledger).handle
                    ),
                    consumer_for(settings.topic_feedback, FeedbackIngest(runtime, ledger).handle),
                ]
            )
            for consumer in consumers:
                await consumer.start()
            tune_collector()

        async def on_stop(self) -> None:
            for consumer in consumers:
                await consumer.stop()
            await runtime.stop()

    @app.timer(interval=settings.monitor_interval_seconds)
    async def heartbeat() -> None:
        """Tell Redis (and so every API process) how far behind this worker is."""
        if not consumers:
            return
        pending, lag_seconds = await consumers[0].lag()
        for consumer in consumers:
            behind, _ = await consumer.lag()
            metrics.consumer_lag_messages.labels(topic=consumer.topic, group=consumer.group).set(
                behind
            )
        metrics.index_lag_seconds.set(lag_seconds)
        try:
            await runtime.index.record_worker(
                runtime.worker_id,
                {
                    "ts": time.time(),
                    "lag_seconds": lag_seconds,
                    "pending": pending,
                    "every": settings.monitor_interval_seconds,
                },
            )
        except (RedisError, OSError) as exc:
            # A timer that raises crashes the whole faust app: a Redis blip must not stop the
            # worker. Checks answer 503 meanwhile; the next beat reports again.
            log.warning("heartbeat: Redis unreachable: %s", exc)

    @app.timer(interval=settings.monitor_interval_seconds)
    async def monitoring() -> None:
        """Overdue feedback, listings whose effective_from arrived, entry gauges."""
        if not consumers:
            return
        try:
            await monitor.tick()
        except Exception as exc:  # Redis or broker away: the next tick tries again
            log.warning("monitor: %s", exc)

    serve_asgi(
        app,
        worker_web_app(runtime),
        host=settings.worker_web_host,
        port=settings.worker_web_port,
        log_level="warning",
    )
    return app
