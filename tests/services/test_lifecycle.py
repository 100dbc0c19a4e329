"""Issue 3, item 1: every list state and lifecycle step, on the real broker, Redis, worker and API.

Black blocks, red opens incentives, watch reviews; removals for every reason; versions in any
order and any number of times; validity windows that open and close by time alone (CST days);
disputed entries; related persons by ID number and role; the folded name index.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from sanctiongate.checks import Checker
from sanctiongate.domain.decisions import CHINA_STANDARD_TIME, today_in_china
from sanctiongate.domain.models import ListEntry, Matter, Subject
from tests.conftest import eventually
from tests.ids import uscc

from .conftest import Stack, list_change, send
from .support import (
    assert_consistent,
    assert_equals_replay,
    decide,
    decisions,
    diff,
    fresh_id_number,
    index_of,
    org,
    person,
    send_many,
    snapshot,
)

pytestmark = pytest.mark.services


async def listed(http: httpx.AsyncClient, category: str, subject: dict, want: str) -> dict:
    """Wait until a check on the subject answers ``want``; return that decision."""

    async def answered() -> dict | None:
        d = await decide(http, category, subject)
        return d if d["decision"] == want else None

    return await eventually(answered)


async def test_black_blocks_red_rewards_watch_reviews(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    topic = stack.settings.topic_list_changes
    black, red, watch = (
        org(uscc(), "黑名单公司"),
        org(uscc(), "红名单公司"),
        org(uscc(), "关注公司"),
    )
    await send(producer, topic, list_change("pol-black", 1, subject=black))
    await send(
        producer,
        topic,
        list_change(
            "pol-red",
            1,
            subject=red,
            polarity="red",
            list_type="honest_model",
            authority="省文明办",
        ),
    )
    await send(
        producer,
        topic,
        list_change("pol-watch", 1, subject=watch, polarity="watch", list_type="key_supervision"),
    )

    blocked = await listed(http, "admin_license", black, "block")
    [hit] = blocked["subjects"][0]["hits"]
    assert (hit["entry_id"], hit["polarity"], hit["match"]) == ("pol-black", "black", "id")
    assert hit["authority"] == "北京市朝阳区人民法院" and hit["effective_until"] is None
    assert hit["disputed"] is False and hit["measures"]

    async def incentives() -> dict | None:
        d = await decide(http, "admin_license", red)
        return d if d["incentives"] else None

    rewarded = await eventually(incentives)
    assert rewarded["decision"] == "pass"
    assert {m["measure_id"] for m in rewarded["incentives"]} >= {"INC-001", "INC-004"}
    assert rewarded["subjects"][0]["hits"][0]["polarity"] == "red"

    reviewed = await listed(http, "government_procurement", watch, "review")
    assert reviewed["subjects"][0]["hits"][0]["polarity"] == "watch"

    # Black overrides red: one black subject in the check empties the incentives.
    both = await decide(http, "admin_license", red, black)
    assert both["decision"] == "block" and both["incentives"] == []
    assert [s["decision"] for s in both["subjects"]] == ["pass", "block"]


@pytest.mark.parametrize("reason", ["repaired", "revoked", "expired", "corrected"])
async def test_every_removal_reason_ends_the_listing(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, reason: str
) -> None:
    code = uscc()
    subject = org(code, f"{reason}公司")
    topic = stack.settings.topic_list_changes
    await send(producer, topic, list_change(f"rm-{reason}", 3, subject=subject))
    await listed(http, "bidding", subject, "block")
    await send(producer, topic, list_change(f"rm-{reason}", 4, op="remove", reason=reason))
    await listed(http, "bidding", subject, "pass")

    history = (await http.get(f"/v1/subjects/{code}")).json()
    assert history["active"] == []
    [past] = history["past"]
    assert (past["entry_id"], past["status"], past["removal_reason"]) == (
        f"rm-{reason}",
        "removed",
        reason,
    )
    assert past["basis"] == "（2024）京0105执1234号"  # the history keeps what was listed


async def test_a_correction_moves_the_listing_to_the_new_identifier(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    wrong, right = uscc(), uscc()
    topic = stack.settings.topic_list_changes
    await send(producer, topic, list_change("corr-1", 1, subject=org(wrong, "更正前公司")))
    await listed(http, "bidding", org(wrong, "更正前公司"), "block")
    await send(producer, topic, list_change("corr-1", 2, subject=org(right, "更正后公司")))
    await listed(http, "bidding", org(right, "更正后公司"), "block")
    assert (await decide(http, "bidding", org(wrong, "更正前公司")))["decision"] == "pass"
    # Nor does the old name still match as a weak key.
    assert (await decide(http, "bidding", org(None, "更正前公司")))["decision"] == "pass"


# --- out-of-order and duplicate delivery ------------------------------------------------------


def _history(rng: random.Random, entry_id: str) -> tuple[list[dict], list[str], list[str]]:
    """A random history of one listing: versions with gaps, upserts and removes mixed,
    the subject's code corrected between versions, a legal representative now and then."""
    codes = [uscc(), uscc()]
    reps = [fresh_id_number(), fresh_id_number()]
    changes = []
    version = rng.randrange(1, 5)
    for _ in range(rng.randrange(1, 7)):
        if rng.random() < 0.3:
            reason = rng.choice(["repaired", "revoked", "expired", "corrected"])
            changes.append(list_change(entry_id, version, op="remove", reason=reason))
        else:
            related = []
            if rng.random() < 0.5:
                related = [
                    {
                        "role": "legal_representative",
                        "name": "法定代表人",
                        "id_number": rng.choice(reps),
                    }
                ]
            changes.append(
                list_change(
                    entry_id,
                    version,
                    subject=org(rng.choice(codes), f"乱序公司{entry_id}"),
                    related_persons=related,
                    basis=f"（2024）京0105执{version}号",
                )
            )
        version += rng.randrange(1, 4)
    return changes, codes, reps


async def test_shuffled_duplicated_history_ends_in_the_final_state(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    rng = random.Random(3)
    final: dict[str, dict] = {}
    sent: list[dict] = []
    orgs: list[str] = []
    people: list[str] = []
    for i in range(80):
        changes, codes, reps = _history(rng, f"shuf-{i}")
        final[f"shuf-{i}"] = changes[-1]
        orgs += codes
        people += reps
        sent += [c for c in changes for _ in range(rng.randrange(1, 4))]  # duplicates
    rng.shuffle(sent)
    await send_many(producer, stack.settings.topic_list_changes, sent)

    expected = {
        entry_id: (
            c["version"],
            c["op"] == "remove",
            c.get("reason"),
            None
            if c["op"] == "remove"
            else ListEntry.model_validate(c["entry"]).model_dump(mode="json"),
        )
        for entry_id, c in final.items()
    }
    index = index_of(stack, redis)

    async def converged() -> bool:
        summary = (await snapshot(index)).summary()
        return all(summary.get(k) == v for k, v in expected.items())

    try:
        await eventually(converged, timeout=30, interval=0.3)
    except AssertionError:
        summary = (await snapshot(index)).summary()
        raise AssertionError(diff({k: summary.get(k) for k in expected}, expected)) from None
    assert_consistent(await snapshot(index))

    # What the checks answer: listed codes block, corrected-away and removed ones pass.
    active = [c["entry"] for c in final.values() if c["op"] == "upsert"]
    listed_orgs = {e["subject"]["uscc"] for e in active}
    listed_reps = {p["id_number"] for e in active for p in e["related_persons"]}
    org_subjects = [org(code, "查询公司") for code in orgs]
    person_subjects = [person(rep, "查询个人") for rep in people]
    want_orgs = ["block" if code in listed_orgs else "pass" for code in orgs]
    want_people = ["block" if rep in listed_reps else "pass" for rep in people]
    assert await decisions(http, "high_consumption", org_subjects) == want_orgs
    assert await decisions(http, "high_consumption", person_subjects) == want_people

    await assert_equals_replay(stack, redis)


# --- validity windows: by time alone, in China Standard Time ------------------------------


def cst_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, CHINA_STANDARD_TIME).astimezone(UTC)


async def test_validity_windows_open_and_close_by_time_alone(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    today = today_in_china(datetime.now(UTC))
    tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)
    windows = {
        "from-tomorrow": (tomorrow, None, "pass"),
        "until-today": (yesterday, today, "pass"),
        "from-today": (today, None, "block"),
        "until-tomorrow": (yesterday, tomorrow, "block"),
    }
    subjects = {}
    for label, (start, until, _) in windows.items():
        subjects[label] = org(uscc(), f"期限{label}公司")
        await send(
            producer,
            stack.settings.topic_list_changes,
            list_change(
                f"win-{label}",
                1,
                subject=subjects[label],
                effective_from=start.isoformat(),
                effective_until=until.isoformat() if until else None,
            ),
        )
    await listed(http, "exit", subjects["until-tomorrow"], "block")
    await listed(http, "exit", subjects["from-today"], "block")
    for label, (_, _, want) in windows.items():
        got = (await decide(http, "exit", subjects[label]))["decision"]
        assert got == want, f"{label}: {got} (today is {today} in CST)"
    pending = (await http.get(f"/v1/subjects/{subjects['from-tomorrow']['uscc']}")).json()
    assert pending["past"][0]["status"] == "pending"

    # The same index, asked at other instants: no event is needed for a window to open or close.
    checker = Checker(index_of(stack, redis))

    async def at(label: str, instant: datetime) -> str:
        subject = Subject.model_validate(subjects[label])
        decision = await checker.check([subject], Matter(category="exit"), "test", now=instant)
        return decision.decision

    midnight = cst_midnight(tomorrow)  # 16:00 UTC the day before
    second = timedelta(seconds=1)
    assert await at("from-tomorrow", midnight - second) == "pass"
    assert await at("from-tomorrow", midnight) == "block"
    assert await at("until-tomorrow", midnight - second) == "block"
    assert await at("until-tomorrow", midnight) == "pass"
    assert await at("until-today", cst_midnight(today) - second) == "block"
    assert await at("until-today", cst_midnight(today)) == "pass"


# --- disputes, related persons, names --------------------------------------------------------


async def test_a_disputed_entry_reviews_and_never_blocks(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    code, rep = uscc(), fresh_id_number()
    subject = org(code, "异议公司")
    related = [{"role": "legal_representative", "name": "异议人", "id_number": rep}]
    topic = stack.settings.topic_list_changes
    await send(
        producer,
        topic,
        list_change("disp-1", 1, subject=subject, related_persons=related, disputed=True),
    )
    reviewed = await listed(http, "high_consumption", subject, "review")
    assert reviewed["subjects"][0]["hits"][0]["disputed"] is True
    rep_check = await decide(http, "high_consumption", person(rep, "异议人"))
    assert rep_check["decision"] == "review"
    # The dispute is settled against the subject: a new version, now blocking.
    await send(producer, topic, list_change("disp-1", 2, subject=subject, related_persons=related))
    await listed(http, "high_consumption", subject, "block")


async def test_related_persons_match_by_id_number_with_their_role(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    rep, principal = fresh_id_number(), fresh_id_number()
    company = org(uscc(), "关联公司")
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change(
            "rel-1",
            1,
            subject=company,
            related_persons=[
                {"role": "legal_representative", "name": "李代表", "id_number": rep},
                {"role": "principal", "name": "王负责", "id_number": principal},
            ],
        ),
    )
    await listed(http, "government_procurement", company, "block")
    # High consumption restrictions reach the legal representative (落实到人) …
    blocked = await decide(http, "high_consumption", person(rep, "李代表", role="applicant"))
    assert blocked["decision"] == "block"
    [hit] = blocked["subjects"][0]["hits"]
    assert (hit["match"], hit["role"]) == ("related_person", "legal_representative")
    assert {m["measure_id"] for m in hit["measures"]} >= {"NBL-2024-001"}
    assert blocked["subjects"][0]["identifier"] == rep[:6] + "********" + rep[-4:]
    assert rep not in str(blocked)
    # … while procurement measures name the subject only: a hit, no measure, so no block.
    procurement = await decide(http, "government_procurement", person(rep, "李代表"))
    assert procurement["decision"] == "pass"
    assert procurement["subjects"][0]["hits"][0]["measures"] == []
    # A person with another ID number but the same name is not the representative.
    stranger = await decide(http, "high_consumption", person(fresh_id_number(), "李代表"))
    assert stranger["decision"] == "pass"
    principal_check = await decide(http, "travel", person(principal, "王负责"))
    assert principal_check["decision"] == "block"
    assert principal_check["subjects"][0]["hits"][0]["role"] == "principal"


async def test_a_name_only_check_finds_the_folded_name_and_reviews(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    listed_name = "陕西东方（集团）贸易有限公司"
    company = org(uscc(), listed_name)
    await send(
        producer, stack.settings.topic_list_changes, list_change("name-1", 1, subject=company)
    )
    await listed(http, "bidding", company, "block")
    # Traditional characters, full-width letters and spaces, ASCII brackets, no identifier.
    variants = [
        "陝西東方(集團)貿易有限公司",
        "陕西\u3000东方 （集团） 贸易有限公司",
        "陝西東方（集團）貿易有限公司",
    ]
    for variant in variants:
        d = await decide(http, "bidding", org(None, variant))
        assert d["decision"] == "review", variant
        [hit] = d["subjects"][0]["hits"]
        assert (hit["entry_id"], hit["match"]) == ("name-1", "name")
    # A name match is weak: an identifier that differs overrides it.
    assert (await decide(http, "bidding", org(uscc(), listed_name)))["decision"] == "pass"
    # Full-width identifier input is normalised to the listed code.
    full_width = company["uscc"].translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert (await decide(http, "bidding", org(full_width, listed_name)))["decision"] == "block"
