"""When an alert is due and what it says (pure; no services)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sanctiongate.domain.models import ListChange, StoredEntry
from sanctiongate.domain.monitoring import (
    Approval,
    alert_id,
    becomes_black,
    listed_parties,
    retroactive_hit,
)
from tests.ids import id_number, uscc

TODAY = date(2026, 11, 23)


def stored(
    polarity: str = "black",
    effective_from: str = "2026-01-01",
    effective_until: str | None = None,
    removed: bool = False,
    rep: str | None = None,
    version: int = 1,
) -> StoredEntry:
    change = ListChange.model_validate(
        {
            "schema": "list_change/v1",
            "op": "upsert",
            "entry_id": "e-1",
            "version": version,
            "event_time": "2026-11-23T09:00:00+08:00",
            "source": "court:test",
            "entry": {
                "list_type": "dishonest_judgment_debtor",
                "polarity": polarity,
                "subject": {"kind": "legal_person", "name": "示例公司", "uscc": CODE},
                "related_persons": (
                    [{"role": "legal_representative", "name": "张示例", "id_number": rep}]
                    if rep
                    else []
                ),
                "authority": "某法院",
                "basis": "（2026）示执1号",
                "effective_from": effective_from,
                "effective_until": effective_until,
            },
        }
    )
    entry = StoredEntry.from_change(change, None)
    if removed:
        entry = entry.model_copy(update={"removed": True, "reason": "repaired"})
    return entry


CODE = uscc()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, stored(), True),
        (None, stored(polarity="red"), False),
        (None, stored(polarity="watch"), False),
        (None, stored(effective_from="2026-11-24"), False),  # starts tomorrow: activation later
        (None, stored(effective_until="2026-11-23"), False),  # ended today
        (stored(), stored(version=2), False),  # a correction of an active listing
        (stored(removed=True), stored(version=2), True),  # relisted after a removal
        (stored(effective_from="2026-11-24"), stored(version=2), True),  # moved to today
        (stored(polarity="red"), stored(version=2), True),  # red → black
        (stored(), stored(removed=True, version=2), False),
    ],
)
def test_becomes_black(before: StoredEntry | None, after: StoredEntry, expected: bool) -> None:
    assert becomes_black(before, after, TODAY) is expected


def test_listed_parties_mask_people_and_keep_roles() -> None:
    rep = id_number()
    subject, person = listed_parties(stored(rep=rep))
    assert (subject.identifier, subject.role, subject.subject.identifier) == (CODE, "subject", CODE)
    assert person.identifier == rep and person.role == "legal_representative"
    assert person.subject.identifier == f"{rep[:6]}********{rep[-4:]}"


def test_retroactive_hit_names_the_approval_and_never_the_full_id() -> None:
    rep = id_number()
    listing = stored(rep=rep)
    _, person = listed_parties(listing)
    approval = Approval("req-9", "fj-finance", "bidding", datetime(2026, 3, 1, tzinfo=UTC))
    alert = retroactive_hit(listing, person, approval, datetime(2026, 11, 23, tzinfo=UTC))
    assert alert.type == "retroactive_hit" and alert.department == "fj-finance"
    assert alert.request_id == "req-9" and alert.entry_id == "e-1"
    assert "legal_representative" in alert.detail and "bidding" in alert.detail
    assert rep not in alert.model_dump_json()
    again = retroactive_hit(listing, person, approval, datetime(2026, 11, 24, tzinfo=UTC))
    assert again.alert_id == alert.alert_id  # a replay is recognisable


def test_alert_ids_differ_by_what_they_are_about() -> None:
    ids = {
        alert_id("retroactive_hit", "e-1", "d", "r"),
        alert_id("retroactive_hit", "e-2", "d", "r"),
        alert_id("approval_despite_block", "d", "r"),
        alert_id("feedback_overdue", "d", "r"),
    }
    assert len(ids) == 4
