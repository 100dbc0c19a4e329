"""The local stack behind ``sanctiongate up``: broker, Redis, worker, API and sample data.

Broker and Redis are started by ``deploy/stack.sh`` (from Maven Central jars and Debian's
redis-server); the worker and the API run as background processes with PID files under the
run directory. Nothing outside the run directory is touched or killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from .keys import KeyStore
from .settings import Settings
from .topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "stack.sh"

TOPIC_BY_SCHEMA = {
    "list_change/v1": "topic_list_changes",
    "measure/v1": "topic_measures",
    "approval_event/v1": "topic_approvals",
    "feedback/v1": "topic_feedback",
}
KEY_FIELDS = ("entry_id", "measure_id", "request_id")


async def publish_file(settings: Settings, path: Path, topic: str | None = None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    try:
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            message = orjson.loads(line)
            target = topic or getattr(settings, TOPIC_BY_SCHEMA[message["schema"]])
            key = next((message[f] for f in KEY_FIELDS if f in message), None)
            await producer.send(target, key=key.encode() if key else None, value=line)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


def run_stack(
    command: str,
    run_dir: Path,
    kafka_port: int,
    redis_port: int,
    check: bool = True,
    timeout: float | None = None,
) -> None:
    """``deploy/stack.sh COMMAND`` (start | stop) for a broker on ``kafka_port`` (its controller
    on the next port) and Redis on ``redis_port``, with their files under ``run_dir``. Used by
    ``sanctiongate up``/``down``, the test session and the benchmarks alike."""
    env = {
        **os.environ,
        "SANCTIONGATE_RUN_DIR": str(run_dir),
        "SANCTIONGATE_KAFKA_PORT": str(kafka_port),
        "SANCTIONGATE_KAFKA_CONTROLLER_PORT": str(kafka_port + 1),
        "SANCTIONGATE_REDIS_PORT": str(redis_port),
    }
    subprocess.run(["bash", str(STACK), command], check=check, env=env, timeout=timeout)


def stop_child(proc: subprocess.Popen, kill: bool = False, grace: float = 30) -> None:
    """SIGTERM (or SIGKILL) a child process and reap it; SIGKILL if it outlives ``grace`` s."""
    if proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _settings_stack(command: str, settings: Settings, check: bool) -> None:
    kafka_port = int(settings.kafka_bootstrap.rsplit(":", 1)[-1])
    redis_port = int(settings.redis_url.rsplit(":", 1)[-1].split("/")[0])
    run_stack(command, settings.run_dir.resolve(), kafka_port, redis_port, check=check)


def _spawn(settings: Settings, name: str, args: list[str]) -> int:
    run = settings.run_dir.resolve()
    run.mkdir(parents=True, exist_ok=True)
    pid_file = run / f"{name}.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        print(f"{name}: already running (pid {pid_file.read_text().strip()})")
        return int(pid_file.read_text())
    log = open(run / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "sanctiongate.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid_file.write_text(str(proc.pid))
    print(f"{name}: pid {proc.pid}, log {run / f'{name}.log'}")
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _publish_sample(settings: Settings, name: str) -> int:
    sample = resources.files("sanctiongate").joinpath(f"data/{name}")
    with resources.as_file(sample) as path:
        return asyncio.run(publish_file(settings, path))


def _wait_listed(api: str, token: str, timeout: float) -> bool:
    """Until the index has applied a list change (its status names the newest one)."""
    request = urllib.request.Request(
        f"{api}/v1/index/status", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(request, timeout=2) as response,
        ):
            if orjson.loads(response.read()).get("newest_event_time"):
                return True
        time.sleep(0.3)
    return False


def development_key(settings: Settings) -> Path:
    """A scope-* key for local use, written (once) to the run directory."""
    token_file = settings.run_dir.resolve() / "dev-api-key"
    store = KeyStore(settings.keys_file)
    if token_file.exists() and store.authenticate(token_file.read_text().strip()):
        return token_file
    _, token = store.create("development", ["*"], label="local development key")
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token_file


def up(settings: Settings, foreground: bool = False) -> int:
    _settings_stack("start", settings, check=True)
    changes = asyncio.run(ensure_topics(settings))
    if changes.summary():
        print("topics", changes.summary())
    key_file = development_key(settings)
    _spawn(settings, "worker", ["worker"])
    _spawn(settings, "api", ["api"])
    api = f"http://{settings.api_host}:{settings.api_port}"
    if not _wait_ready(f"{api}/readyz", 120):
        print(f"the API did not become ready; see {settings.run_dir}/api.log and worker.log")
        return 1
    count = _publish_sample(settings, "sample_entries.jsonl")
    # Approvals compared once the listings are in, so the demo shows a block and an alert.
    _wait_listed(api, key_file.read_text().strip(), 30)
    approvals = _publish_sample(settings, "sample_approvals.jsonl")
    print(
        f"""
sanctiongate is up.
  API         {api}  (OpenAPI: {api}/docs)
  metrics     {api}/metrics  and  http://{settings.worker_web_host}:{settings.worker_web_port}/metrics
  dev key     {key_file}   (department 'development', scope *)
  sample      {count} list changes published to {settings.topic_list_changes},
              {approvals} approval events to {settings.topic_approvals} (decisions on {settings.topic_decisions},
              an approval_despite_block alert on {settings.topic_alerts})
  try         curl -s -H "Authorization: Bearer $(cat {key_file})" -H 'content-type: application/json' \\
                -d '{{"matter":{{"category":"government_procurement"}},"subjects":[{{"kind":"legal_person","name":"示例","uscc":"91350203M0001QAY9B"}}]}}' \\
                {api}/v1/checks
  stop        make down
"""
    )
    if foreground:
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
        return down(settings)
    return 0


def down(settings: Settings) -> int:
    run = settings.run_dir.resolve()
    for name in ("api", "worker"):
        pid_file = run / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            print(f"{name}: stopped")
        pid_file.unlink(missing_ok=True)
    _settings_stack("stop", settings, check=False)
    return 0
