"""The measure catalogue: the shipped default and the ``applicable()`` question (SPEC §3, §4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sanctiongate.domain.catalogue import Catalogue, default_catalogue_bytes, parse_catalogue
from sanctiongate.domain.models import Measure

STANDARD_CATEGORIES = {
    "market_entry",
    "admin_license",
    "government_procurement",
    "bidding",
    "fiscal_funding",
    "land_transfer",
    "honours",
    "financing",
    "securities",
    "public_office",
    "high_consumption",
    "travel",
    "real_estate",
    "exit",
    "customs",
    "tax_benefits",
}


def measure(measure_id: str, **fields: Any) -> Measure:
    body: dict[str, Any] = {
        "schema": "measure/v1",
        "measure_id": measure_id,
        "title": f"measure {measure_id}",
        "effect": "block",
        "mandatory": True,
        "list_types": ["dishonest_judgment_debtor"],
        "matter_categories": ["government_procurement"],
        "roles": ["subject"],
        "implementing_departments": ["财政部门"],
        "legal_basis": "《全国失信惩戒措施基础清单》",
    }
    body.update(fields)
    return Measure.model_validate(body)


# --- the shipped catalogue ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return parse_catalogue(default_catalogue_bytes())


def test_shipped_catalogue_is_substantial_and_ids_are_unique(shipped: Catalogue) -> None:
    raw = json.loads(default_catalogue_bytes())
    assert len(raw) >= 30
    assert len(shipped) == len(raw), "two measures share a measure_id"


def test_every_shipped_measure_says_why_and_who(shipped: Catalogue) -> None:
    for m in shipped:
        assert m.legal_basis.strip(), m.measure_id
        assert m.implementing_departments, m.measure_id
        assert all(d.strip() for d in m.implementing_departments), m.measure_id


def test_shipped_catalogue_spans_the_standard_categories(shipped: Catalogue) -> None:
    named = {c for m in shipped for c in m.matter_categories}
    assert named <= STANDARD_CATEGORIES | {"*"}, "a typo in a category never matches a check"
    assert named >= STANDARD_CATEGORIES


def test_shipped_catalogue_has_every_effect(shipped: Catalogue) -> None:
    effects = {m.effect for m in shipped}
    assert effects == {"block", "review", "incentive"}
    assert any(m.effect == "block" and m.mandatory for m in shipped)


def test_court_debtors_are_kept_out_of_procurement(shipped: Catalogue) -> None:
    # The best-known joint sanction: 失信被执行人 may not take part in government procurement.
    found = shipped.applicable("dishonest_judgment_debtor", "government_procurement", "subject")
    assert any(m.effect == "block" and m.mandatory for m in found)


@pytest.mark.parametrize("role", ["subject", "legal_representative", "principal"])
def test_high_consumption_ban_follows_the_debtor_and_its_managers(
    shipped: Catalogue, role: str
) -> None:
    # 限制高消费 binds the debtor's legal representative and principal too (落实到人).
    found = shipped.applicable("dishonest_judgment_debtor", "high_consumption", role)
    assert any(m.effect == "block" and m.mandatory for m in found)


# --- applicable() ------------------------------------------------------------------------

SMALL = Catalogue(
    [
        measure("GP", matter_categories=["government_procurement", "bidding"]),
        measure("ALL", effect="review", mandatory=False, matter_categories=["*"]),
        measure("LR", roles=["legal_representative", "principal"]),
        measure("TAX", list_types=["serious_tax_violation"], matter_categories=["exit"]),
        measure(
            "RED",
            effect="incentive",
            mandatory=False,
            list_types=["honest_model"],
            matter_categories=["admin_license"],
        ),
    ]
)


@pytest.mark.parametrize(
    ("list_type", "category", "role", "expected"),
    [
        ("dishonest_judgment_debtor", "government_procurement", "subject", ["GP", "ALL"]),
        ("dishonest_judgment_debtor", "bidding", "subject", ["GP", "ALL"]),
        ("dishonest_judgment_debtor", "honours", "subject", ["ALL"]),  # only the wildcard
        ("dishonest_judgment_debtor", "some_local_category", "subject", ["ALL"]),
        ("dishonest_judgment_debtor", "government_procurement", "legal_representative", ["LR"]),
        ("dishonest_judgment_debtor", "government_procurement", "principal", ["LR"]),
        ("dishonest_judgment_debtor", "government_procurement", "responsible_person", []),
        ("serious_tax_violation", "exit", "subject", ["TAX"]),
        ("serious_tax_violation", "government_procurement", "subject", []),
        ("honest_model", "admin_license", "subject", ["RED"]),
        ("unknown_list", "government_procurement", "subject", []),
    ],
)
def test_applicable_filters_by_list_type_category_and_role(
    list_type: str, category: str, role: str, expected: list[str]
) -> None:
    found = SMALL.applicable(list_type, category, role)
    assert sorted(m.measure_id for m in found) == sorted(expected)


def test_a_changed_catalogue_is_a_new_catalogue() -> None:
    replaced = SMALL.with_measure(measure("GP", matter_categories=["honours"]))
    assert len(replaced) == len(SMALL)
    ids = lambda c, cat: sorted(  # noqa: E731
        m.measure_id for m in c.applicable("dishonest_judgment_debtor", cat, "subject")
    )
    assert ids(replaced, "honours") == ["ALL", "GP"]
    assert ids(replaced, "government_procurement") == ["ALL"]
    # The old one is untouched (a check may still be reading it), its cache included.
    assert ids(SMALL, "government_procurement") == ["ALL", "GP"]
    assert ids(SMALL, "honours") == ["ALL"]

    removed = SMALL.without("ALL")
    assert removed.get("ALL") is None and SMALL.get("ALL") is not None
    assert ids(removed, "honours") == []

    added = SMALL.with_measure(measure("NEW", matter_categories=["honours"]))
    assert len(added) == len(SMALL) + 1
    assert ids(added, "honours") == ["ALL", "NEW"]


def test_parse_catalogue_rejects_an_invalid_measure() -> None:
    bad = [{"schema": "measure/v1", "measure_id": "X", "effect": "ban"}]
    with pytest.raises(ValueError):
        parse_catalogue(json.dumps(bad).encode())
