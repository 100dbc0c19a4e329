"""``sanctiongate load`` on the real broker: the shipped court sample ends up in the index."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import REPO, eventually

from .conftest import Stack

pytestmark = pytest.mark.services

SAMPLE = Path(str(resources.files("sanctiongate") / "data" / "court_dishonest_sample.csv"))
LISTED_USCC = "91110105MA01F3K72L"  # 北京示例广告有限公司, row 1
LISTED_PERSON = "110108198209040125"  # 沈示例, row 2


def load(stack: Stack, path: Path, rejects: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanctiongate.cli", "load", str(path), "--rejects", str(rejects)],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def check(http: httpx.AsyncClient, category: str, subject: dict) -> dict:
    response = await http.post(
        "/v1/checks", json={"matter": {"category": category}, "subjects": [subject]}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def stale_upserts(stack: Stack) -> float:
    async with httpx.AsyncClient(base_url=stack.worker_url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    found = re.search(
        r'^sanctiongate_list_changes_total\{op="upsert",result="stale"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_loading_the_court_sample(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    rejects = tmp_path / "sample.rejects.jsonl"
    run = load(stack, SAMPLE, rejects)
    assert run.returncode == 0, run.stderr
    assert "read: 28" in run.stdout
    assert f"published: 25 (upsert 25, remove 0) to {stack.settings.topic_list_changes}" in (
        run.stdout
    )
    assert "rejected: 3 (invalid_date 1, malformed_identifier 1, missing_field 1)" in run.stdout

    found = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["row"], r["reason"]) for r in found] == [
        (12, "malformed_identifier"),
        (14, "invalid_date"),
        (16, "missing_field"),
    ]
    assert all(r["message"] for r in found)
    with SAMPLE.open(encoding="utf-8-sig", newline="") as f:
        numbers = [r["身份证号码/组织机构代码"] for r in csv.DictReader(f)]
    personal = [n for n in numbers if n[:17].isdigit()]
    written = rejects.read_text() + run.stdout + run.stderr
    assert personal and not [n for n in personal if n in written], "an ID number leaked"

    organisation = {"kind": "legal_person", "name": "北京示例广告有限公司", "uscc": LISTED_USCC}

    async def blocked() -> dict | None:
        decision = await check(http, "government_procurement", organisation)
        return decision if decision["decision"] == "block" else None

    decision = await eventually(blocked, timeout=30)
    [hit] = decision["subjects"][0]["hits"]
    assert hit["match"] == "id" and hit["list_type"] == "dishonest_judgment_debtor"
    assert hit["authority"] == "北京市朝阳区人民法院"
    assert "（2025）京0105执5012号" in hit["basis"]

    person = {"kind": "natural_person", "name": "沈示例", "id_number": LISTED_PERSON}
    personal_decision = await check(http, "high_consumption", person)
    assert personal_decision["decision"] == "block"
    assert LISTED_PERSON not in str(personal_decision)

    # The court republishes row 1 as fully performed (全部履行) on the same 发布时间: repaired.
    with SAMPLE.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header, first = reader.fieldnames, next(reader)
    assert header is not None
    performed = tmp_path / "performed.csv"
    with performed.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerow({**first, "履行情况": "全部履行"})
    run = load(stack, performed, tmp_path / "performed.rejects.jsonl")
    assert run.returncode == 0, run.stderr
    assert "published: 1 (upsert 0, remove 1)" in run.stdout

    async def passed() -> bool:
        return (await check(http, "government_procurement", organisation))["decision"] == "pass"

    await eventually(passed, timeout=30)
    response = await http.get(f"/v1/subjects/{LISTED_USCC}")
    assert response.status_code == 200, response.text
    subject = response.json()
    assert subject["active"] == []
    [past] = subject["past"]
    assert (past["status"], past["removal_reason"]) == ("removed", "repaired")

    # Loading the same file again is a no-op: every upsert is stale, the repaired entry stays off.
    stale_before = await stale_upserts(stack)
    run = load(stack, SAMPLE, rejects)
    assert run.returncode == 0, run.stderr

    async def all_stale() -> bool:
        return await stale_upserts(stack) >= stale_before + 25

    await eventually(all_stale, timeout=30)
    assert (await check(http, "government_procurement", organisation))["decision"] == "pass"
    assert (await check(http, "high_consumption", person))["decision"] == "block"
