"""Issue 5 end to end: a real Prometheus scrapes the stack's API and worker.

Also: several uvicorn processes behind one API report summed counts, and neither /metrics nor
the logs ever carry a whole personal ID number.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from sanctiongate.devstack import stop_child
from tests.conftest import RUN_DIR, Process, eventually, free_port, wait_http
from tests.ids import id_number, uscc

from .conftest import Stack, list_change, send

pytestmark = pytest.mark.services

# A whole 18-character resident ID number anywhere in a text (not a float's fraction digits).
WHOLE_ID = re.compile(r"(?<![\d.])\d{17}[\dXx](?!\d)")


class Prometheus:
    """The Debian prometheus binary on loopback, scraping every second, in a temp dir."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install prometheus (.ci/run installs it)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items()
        )
        config = workdir / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
        )
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        """The single value of a scalar-like query; 0 when there is no series yet."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def stop(self) -> None:
        stop_child(self.proc)
        self._log.close()


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(
        tmp_path_factory.mktemp("prometheus"),
        {
            "sanctiongate-api": stack.api_url.removeprefix("http://"),
            "sanctiongate-worker": stack.worker_url.removeprefix("http://"),
        },
    )
    try:
        wait_http(f"{prom.url}/-/ready", 60)
        yield prom
    finally:
        prom.stop()


def person(number: str) -> dict:
    return {"kind": "natural_person", "name": "李示例", "id_number": number, "role": "applicant"}


def org(code: str) -> dict:
    return {"kind": "legal_person", "name": "上海示例贸易有限公司", "uscc": code}


async def check(http: httpx.AsyncClient, category: str, *subjects: dict) -> dict:
    response = await http.post(
        "/v1/checks", json={"matter": {"category": category}, "subjects": list(subjects)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_prometheus_sees_checks_and_propagation(
    stack: Stack,
    prometheus: Prometheus,
    producer: AIOKafkaProducer,
    http: httpx.AsyncClient,
) -> None:
    async def both_targets_up() -> bool:
        return prometheus.value('sum(up{job=~"sanctiongate-.*"})') == 2

    await eventually(both_targets_up, timeout=30, interval=0.5)
    checks_before = prometheus.value("sum(sanctiongate_checks_total)")
    changes_before = prometheus.value("sum(sanctiongate_change_propagation_seconds_count)")

    code, representative = uscc(), id_number()
    assert (await check(http, "bidding", org(code)))["decision"] == "pass"
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change(
            "prom-1",
            1,
            subject=org(code),
            related_persons=[
                {"role": "legal_representative", "name": "李示例", "id_number": representative}
            ],
        ),
    )

    async def blocked() -> bool:
        return (await check(http, "bidding", org(code)))["decision"] == "block"

    await eventually(blocked)
    await check(http, "high_consumption", person(representative))

    async def scraped() -> tuple[float, float] | None:
        checks = prometheus.value("sum(sanctiongate_checks_total)")
        changes = prometheus.value("sum(sanctiongate_change_propagation_seconds_count)")
        moved = checks >= checks_before + 3 and changes > changes_before
        return (checks, changes) if moved else None  # all three checks scraped, not the first

    checks, _ = await eventually(scraped, timeout=30, interval=0.5)
    assert checks >= checks_before + 3

    # The worker's consumer lag per topic and the index size read from Redis reach Prometheus.
    async def gauges() -> bool:
        lag = prometheus.query(
            f'sanctiongate_consumer_lag_messages{{topic="{stack.settings.topic_list_changes}"}}'
        )
        entries = prometheus.value('max(sanctiongate_index_entries{polarity="black"})')
        available = prometheus.value("min(sanctiongate_index_available)")
        return bool(lag) and entries >= 1 and available == 1

    await eventually(gauges, timeout=30, interval=0.5)
    blocks = prometheus.value(
        'sum(sanctiongate_checks_total{channel="http", decision="block", '
        'matter_category="bidding"})'
    )
    assert blocks >= 1


async def test_no_whole_id_number_in_metrics_or_logs(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    numbers = [id_number(birth="19750315"), id_number(birth="19900101")]
    while not numbers[1][-1].isdigit():  # it also goes into a matter category: [a-z0-9_] only
        numbers[1] = id_number(birth="19900101")
    for number in numbers:
        await check(http, "financing", person(number))
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change(
            "prom-person", 1, subject={k: v for k, v in person(numbers[0]).items() if k != "role"}
        ),
    )

    async def listed() -> bool:
        return (await check(http, "financing", person(numbers[0])))["decision"] != "pass"

    await eventually(listed)
    # A caller-chosen matter category shaped like an ID number must not become a label either.
    await check(http, f"c{numbers[1]}", org(uscc()))
    for url in (stack.api_url, stack.worker_url):
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert "sanctiongate_checks_total" in text or url == stack.worker_url
        assert not WHOLE_ID.findall(text), f"{url}/metrics shows {WHOLE_ID.findall(text)}"
    logs = [proc.log_path.read_text(errors="replace") for proc in [*stack.workers, stack.api]]
    for text in logs:
        assert not WHOLE_ID.findall(text)
        assert all(number not in text for number in numbers)


def test_logs_are_json_lines(stack: Stack) -> None:
    assert stack.api is not None
    for proc in [stack.api, *stack.workers]:
        lines = [line for line in proc.log_path.read_text(errors="replace").splitlines() if line]
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records, f"no JSON log line in {proc.log_path}"
        for record in records:
            assert {"ts", "level", "logger", "message"} <= record.keys()


def scrape_checks(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sanctiongate_checks_total" and sample.labels["channel"] == "http"
    )


async def test_api_processes_report_one_sum(stack: Stack) -> None:
    """``api --workers 2``: whichever process answers /metrics, it reports all the checks."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = Process("api-2workers", ["api", "--workers", "2", "--port", str(port)], stack.env)
    try:
        wait_http(f"{url}/readyz", 60, proc=api)
        async with httpx.AsyncClient(base_url=url, headers=stack.headers(), timeout=10) as client:
            # Concurrent new connections spread the checks over both processes.
            async def one() -> None:
                response = await client.post(
                    "/v1/checks",
                    json={"matter": {"category": "bidding"}, "subjects": [org(uscc())]},
                    headers={"Connection": "close"},
                )
                assert response.status_code == 200, response.text

            # Until both processes have answered some (the kernel picks who accepts).
            sent = 0
            while sent < 200 and (sent < 20 or len(checks_per_process(port)) < 2):
                await asyncio.gather(*(one() for _ in range(5)))
                sent += 5
        seen = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 5:
            seen.add(scrape_checks(url))
            await asyncio.sleep(0.05)
        assert seen == {float(sent)}, f"{sent} checks, but scrapes say {seen}"
        per_process = checks_per_process(port)
        assert len(per_process) == 2, f"one process answered every check: {per_process}"
        assert sum(per_process.values()) == sent
    finally:
        api.stop()
    assert api.proc.returncode is not None


def checks_per_process(port: int) -> dict[str, float]:
    """HTTP checks counted in each API process's own file (``counter_<pid>.db``)."""
    counts: dict[str, float] = {}
    for path in (RUN_DIR.resolve() / "prometheus" / f"api-{port}").glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if key.startswith('["sanctiongate_checks"') and '"http"' in key and value:
                pid = path.stem.removeprefix("counter_")
                counts[pid] = counts.get(pid, 0.0) + value
    return counts
