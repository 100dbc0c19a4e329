"""Where the API's uvicorn processes keep their Prometheus samples (multiprocess mode).

This module must not import ``prometheus_client``: it sets the directory that library reads
when it is first imported, in the parent process, before uvicorn starts its workers.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_api_metrics_dir(run_dir: Path, port: int) -> Path:
    """Point prometheus_client at a per-API-instance directory and empty it.

    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` wins. Files left by a previous run would
    add its counts to ours, so every ``*.db`` there is removed: call this once, at start,
    before any API process runs.
    """
    configured = os.environ.get(ENV)
    path = Path(configured) if configured else run_dir / "prometheus" / f"api-{port}"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    return path
