"""The API renders an answer's JSON straight to bytes: the very bytes ``model_dump_json`` gives
(the ledger, idempotency and tests compare answers byte for byte)."""

from __future__ import annotations

import pytest

from sanctiongate.api.app import wire
from sanctiongate.domain.models import Subject

from .domain.test_check_assembly import NOW, PROCUREMENT, checker
from .domain.test_decision_wire import CHECKS, ENTRIES, decide


@pytest.mark.parametrize("subjects", CHECKS)
async def test_a_decision_renders_as_model_dump_json(subjects: list[Subject]) -> None:
    decision = await decide(subjects)
    assert wire(decision) == decision.model_dump_json(by_alias=True).encode()


async def test_a_batch_renders_as_model_dump_json() -> None:
    subjects = [subject for check in CHECKS for subject in check]
    response = await checker(*ENTRIES).batch(subjects, PROCUREMENT, "财政局", "b-1", NOW)
    assert wire(response) == response.model_dump_json(by_alias=True).encode()
    assert len({r.decision for r in response.results}) > 1
