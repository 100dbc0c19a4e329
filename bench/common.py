"""Shared pieces of the benchmarks: the local stack, a worker subprocess, realistic messages.

Identifiers are derived from a counter, so a run of any size has unique, valid codes (GB 32100
and GB 11643 check characters) without keeping a set of the ones already drawn.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from sanctiongate.devstack import run_stack, stop_child
from sanctiongate.domain.identifiers import (
    USCC_ALPHABET,
    resident_id_check_char,
    uscc_check_char,
)
from sanctiongate.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run" / "bench"
KAFKA_PORT = int(os.environ.get("SANCTIONGATE_BENCH_KAFKA_PORT", "49092"))
REDIS_PORT = int(os.environ.get("SANCTIONGATE_BENCH_REDIS_PORT", "46379"))

# Region codes: listed subjects come from one, never-listed subjects from another, so an
# "unlisted" subject of an approval can never collide with a listing.
LISTED_REGION = "110105"
UNLISTED_REGION = "310115"

# --- identifiers and names -----------------------------------------------------------------


def _base31(n: int, width: int) -> str:
    digits = []
    for _ in range(width):
        n, r = divmod(n, 31)
        digits.append(USCC_ALPHABET[r])
    return "".join(reversed(digits))


def uscc(n: int, region: str = LISTED_REGION) -> str:
    """The n-th organisation code of a region (unique for n < 31**9)."""
    body = "91" + region + _base31(n, 9)
    return body + uscc_check_char(body)


_BIRTH_EPOCH = date(1950, 1, 1)


def id_number(n: int, region: str = LISTED_REGION) -> str:
    """The n-th resident ID number of a region: a thousand sequence numbers per birth day."""
    birth = _BIRTH_EPOCH + timedelta(days=n // 1000)
    body = region + birth.strftime("%Y%m%d") + f"{n % 1000:03d}"
    return body + resident_id_check_char(body)


_CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆"]
_WORDS = "宏达鑫源华泰恒信安盛隆兴瑞丰永康金诚博远中天汇通东方新科智联海创明德嘉禾君和正元"
_TRADES = ["科技", "贸易", "建筑工程", "商贸", "实业", "投资管理", "物流", "餐饮管理"]
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"
_COURTS = [
    "北京市朝阳区人民法院",
    "北京市海淀区人民法院",
    "上海市浦东新区人民法院",
    "广州市天河区人民法院",
    "深圳市南山区人民法院",
    "杭州市西湖区人民法院",
    "成都市武侯区人民法院",
    "武汉市江汉区人民法院",
]


def company_name(n: int) -> str:
    w = len(_WORDS)
    words = _WORDS[n % w] + _WORDS[(n // w) % w] + _WORDS[(n // w // w) % w]
    return f"{_CITIES[n % len(_CITIES)]}{words}{_TRADES[n % len(_TRADES)]}有限公司"


def person_name(n: int) -> str:
    g = len(_GIVEN)
    return _SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n // 7) % g] + _GIVEN[(n // 7 // g) % g]


# --- messages --------------------------------------------------------------------------------


def list_upsert(n: int, *, with_person: bool, version: int = 1, prefix: str = "e") -> dict:
    """A court dishonest-debtor listing of organisation n, as a ListChange (SPEC §3)."""
    related = (
        [
            {
                "role": "legal_representative",
                "kind": "natural_person",
                "name": person_name(n),
                "id_number": id_number(n),
            }
        ]
        if with_person
        else []
    )
    court = _COURTS[n % len(_COURTS)]
    return {
        "schema": "list_change/v1",
        "op": "upsert",
        "entry_id": f"{prefix}{n}",
        "version": version,
        "event_time": datetime.now(UTC).isoformat(),
        "source": "court:spc",
        "entry": {
            "list_type": "dishonest_judgment_debtor",
            "polarity": "black",
            "subject": {"kind": "legal_person", "name": company_name(n), "uscc": uscc(n)},
            "related_persons": related,
            "authority": court,
            "basis": f"（2025）{court[:1]}0105执{n % 100000}号",
            "effective_from": "2025-01-01",
            "effective_until": None,
            "disputed": False,
        },
    }


MATTERS = [
    "government_procurement",
    "bidding",
    "admin_license",
    "fiscal_funding",
    "market_entry",
    "high_consumption",
    "financing",
    "honours",
]


def submitted_event(i: int, request_id: str, subject_n: int, listed: bool) -> dict:
    """A `submitted` ApprovalEvent for organisation subject_n (listed or not) and its head."""
    region = LISTED_REGION if listed else UNLISTED_REGION
    subjects = [
        {
            "role": "applicant",
            "kind": "legal_person",
            "name": company_name(subject_n),
            "uscc": uscc(subject_n, region),
        }
    ]
    if i % 2 == 0:  # half the requests also name the applicant's legal representative
        subjects.append(
            {
                "role": "legal_representative",
                "kind": "natural_person",
                "name": person_name(subject_n),
                "id_number": id_number(subject_n, region),
            }
        )
    return {
        "schema": "approval_event/v1",
        "event_type": "submitted",
        "request_id": request_id,
        "department": "bench-department",
        "matter": {"category": MATTERS[i % len(MATTERS)]},
        "subjects": subjects,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


# --- the stack -------------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stack(command: str) -> None:
    run_stack(command, RUN_DIR, KAFKA_PORT, REDIS_PORT, timeout=600)


def start_stack() -> bool:
    """Start Kafka + Redis unless both already answer; True when this call started them."""
    if _port_open(KAFKA_PORT) and _port_open(REDIS_PORT):
        return False
    _stack("start")
    return True


def stop_stack() -> None:
    _stack("stop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Namespace:
    """Topic names, index prefix and consumer groups unique to one benchmark run."""

    ns: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    worker_port: int = field(default_factory=free_port)

    def overrides(self) -> dict[str, str]:
        ns = self.ns
        topics = {
            "LIST_CHANGES": "sanction.list.changes",
            "MEASURES": "sanction.measures",
            "APPROVALS": "approval.events",
            "DECISIONS": "sanction.decisions",
            "FEEDBACK": "sanction.feedback",
            "ALERTS": "sanction.alerts",
            "REJECTED": "sanction.rejected",
            "AUDIT": "sanction.audit",
        }
        return {
            "SANCTIONGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}",
            "SANCTIONGATE_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "SANCTIONGATE_RUN_DIR": str(RUN_DIR),
            "SANCTIONGATE_KEYS_FILE": str(RUN_DIR / f"keys-{ns}.json"),
            "SANCTIONGATE_APP_ID": f"sg-bench-{ns}",
            "SANCTIONGATE_INDEX_PREFIX": f"sgb{ns}",
            "SANCTIONGATE_WORKER_WEB_PORT": str(self.worker_port),
            **{f"SANCTIONGATE_TOPIC_{k}": f"b{ns}.{v}" for k, v in topics.items()},
        }

    def settings(self) -> Settings:
        return Settings(
            _env_file=None,
            **{k.removeprefix("SANCTIONGATE_").lower(): v for k, v in self.overrides().items()},
        )

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"


class Worker:
    """``sanctiongate worker`` as a subprocess, its output in a log under .run/bench."""

    live: ClassVar[set[Worker]] = set()  # started and not yet stopped: stop_all() at exit

    def __init__(self, space: Namespace, name: str) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RUN_DIR / f"worker-{space.ns}-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        env = {**os.environ, **space.overrides()}
        self.url = space.worker_url
        self.proc = subprocess.Popen(
            # The default INFO level, as deployed: at WARN and above faust adds its progress
            # spinner and sets the root logger to DEBUG, so every library's debug call builds a
            # log record (about 5% of a worker's CPU in a profile).
            [sys.executable, "-m", "sanctiongate.cli", "--loglevel", "INFO", "worker"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=RUN_DIR,  # faust writes its data directory into the working directory
        )
        Worker.live.add(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU the worker has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_child(self.proc, grace=60)
        self._log.close()
        Worker.live.discard(self)

    @classmethod
    def stop_all(cls) -> None:
        """Whatever a failed phase left running: a stray worker would load the next runs."""
        for worker in list(cls.live):
            worker.stop()


def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over the series whose labels include ``labels``."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


# --- timing the in-process profiles ----------------------------------------------------------


@dataclass
class Measured:
    """What :func:`measured` found: this process's CPU seconds and the wall seconds."""

    cpu: float = 0.0
    wall: float = 0.0
    profiler: cProfile.Profile | None = None

    def print_profile(self, sort: str = "tottime", rows: int = 45) -> None:
        if self.profiler is not None:
            pstats.Stats(self.profiler).sort_stats(sort).print_stats(rows)


@contextmanager
def measured(profile: bool = False) -> Iterator[Measured]:
    """CPU and wall time of the block, under cProfile when ``profile`` (profile_*.py)."""
    result = Measured(profiler=cProfile.Profile() if profile else None)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if result.profiler is not None:
        result.profiler.enable()
    try:
        yield result
    finally:
        if result.profiler is not None:
            result.profiler.disable()
        result.cpu, result.wall = time.process_time() - cpu0, time.perf_counter() - wall0


class StandInTransport:
    """What uvicorn's protocols ask of an asyncio transport, for the in-process profiles
    (profile_http.py, profile_api.py): each says what a ``write`` does."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name in ("sockname", "peername") else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
