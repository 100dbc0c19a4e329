"""The worker's own small web surface: liveness, readiness and its Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..index import IndexUnavailable
from .runtime import Runtime


def worker_web_app(runtime: Runtime) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "worker": runtime.worker_id})

    async def readyz(_: Request) -> Response:
        try:
            await runtime.index.serving_meta()
        except IndexUnavailable as exc:
            return JSONResponse({"status": "unavailable", "reason": exc.reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )
