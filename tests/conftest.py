"""One fixture module: starts the real Kafka broker and Redis once per test session.

Both are started by the project's own ``deploy/stack.sh`` on test ports and a test run
directory, and stopped at the end. A missing broker or Redis is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanctiongate.devstack import run_stack, stop_child

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run" / "test"
KAFKA_PORT = int(os.environ.get("SANCTIONGATE_TEST_KAFKA_PORT", "19092"))
REDIS_PORT = int(os.environ.get("SANCTIONGATE_TEST_REDIS_PORT", "16379"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Services:
    """Addresses of the session's broker and Redis, and helpers to run our processes."""

    kafka = f"127.0.0.1:{KAFKA_PORT}"
    redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    run_dir = RUN_DIR

    def env(self, **overrides: str) -> dict[str, str]:
        base = {
            **os.environ,
            "SANCTIONGATE_KAFKA_BOOTSTRAP": self.kafka,
            "SANCTIONGATE_REDIS_URL": self.redis_url,
            "SANCTIONGATE_RUN_DIR": str(RUN_DIR),
            "SANCTIONGATE_KEYS_FILE": str(RUN_DIR / "api-keys.json"),
            "SANCTIONGATE_MONITOR_INTERVAL_SECONDS": "0.5",
        }
        base.update(overrides)
        return base


def session_stack(command: str) -> None:
    """``deploy/stack.sh COMMAND`` for the session's broker and Redis (start, stop, and
    redis-stop / redis-start for fault tests)."""
    run_stack(command, RUN_DIR, KAFKA_PORT, REDIS_PORT, timeout=600)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    session_stack("start")
    try:
        yield Services()
    finally:
        session_stack("stop")


class Process:
    """A sanctiongate process (worker or API) under test, with its log kept for failures."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RUN_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sanctiongate.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, kill: bool = False) -> None:
        stop_child(self.proc, kill)
        self._log.close()


def wait_http(
    url: str, timeout: float = 60, status: int = 200, proc: Process | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.proc.returncode}):\n{proc.log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return
                last = response.status
        except urllib.error.HTTPError as exc:
            last = exc.code
            if exc.code == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    detail = proc.log() if proc is not None else ""
    raise AssertionError(f"{url} did not answer {status} in {timeout}s (last: {last})\n{detail}")


async def eventually(predicate, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last!r}")
