"""SanctionIndex.prepare / PreparedBatch.steps (no Redis): what a batch works out ahead, with
its names folded in one pass, is what each change would write on its own."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctiongate.domain.identifiers import normalise_name
from sanctiongate.domain.models import ListChange, StoredEntry
from sanctiongate.index.layout import ROLE_CODES, Layout
from sanctiongate.index.store import SanctionIndex, Written, _native_refs
from sanctiongate.streams.rebuild import decode_change

from .test_records import upserts

_SEPARATOR = "\ue000"  # what normalise_names joins a batch with: such a name is folded alone


def _remove(entry_id: str, version: int) -> ListChange:
    return decode_change(
        orjson.dumps(
            {
                "schema": "list_change/v1",
                "op": "remove",
                "entry_id": entry_id,
                "version": version,
                "event_time": "2026-01-01T00:00:00+08:00",
                "source": "court:spc",
                "reason": "repaired",
            }
        )
    )


@st.composite
def batches(draw: st.DrawFn) -> list[ListChange]:
    count = draw(st.integers(1, 80))  # past 64 names: the batch is folded as one text
    changes = []
    for n in range(count):
        entry_id = f"e-{draw(st.integers(0, count // 2))}"  # some entries more than once
        version = draw(st.integers(0, 3))
        if draw(st.integers(0, 9)) == 0:
            changes.append(_remove(entry_id, version))
            continue
        message = draw(upserts(entry_id, version))
        if n % 17 == 0 and len(message["entry"]["subject"]["name"]) < 300:
            message["entry"]["subject"]["name"] += _SEPARATOR
        changes.append(decode_change(orjson.dumps(message)))
    return changes


def _fields(written: Written) -> tuple:
    return (
        written.after,
        written.code,
        written.record,
        written.ids,
        written.names,
        written.codeless,
    )


@settings(max_examples=60, deadline=None)
@given(batches(), st.integers(1, 50))
def test_what_a_batch_works_out_ahead_is_what_each_change_writes(
    changes: list[ListChange], every: int
) -> None:
    prepared = SanctionIndex.prepare(changes)
    for _ in prepared.steps(every):
        pass
    batch = prepared.batch
    latest: dict[str, ListChange] = {}
    for change in changes:
        held = latest.get(change.entry_id)
        if held is None or change.version > held.version:
            latest[change.entry_id] = change
    assert [c.entry_id for c in batch.changes] == list(latest)
    assert all(batch.changes[i] is c for i, c in enumerate(latest.values()))
    upserted = {e for e, c in latest.items() if c.op == "upsert"}
    assert set(batch.written) == upserted
    for entry_id in upserted:
        alone = Written.of(StoredEntry.from_change(latest[entry_id], None))
        assert _fields(batch.written[entry_id]) == _fields(alone)
    assert list(prepared.steps(every)) == [], "worked out once"


def _refs(flat: list) -> list[tuple]:
    return sorted(tuple(flat[i : i + 4]) for i in range(0, len(flat), 4))


@pytest.mark.skipif(_native_refs is None, reason="built without the C encoder (records.py)")
@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from([1, 7, 4096]))
def test_a_new_records_refs_from_c_are_the_flat_refs_of_its_keys(
    changes: list[ListChange], buckets: int
) -> None:
    """What the apply adds for a listing where no record was: the C refs are
    Layout.flat_refs of the Written's keys (each once), with the batch's folds or without."""
    layout = Layout(buckets=buckets)
    prepared = SanctionIndex.prepare(changes)
    prepared.complete()
    for written in prepared.batch.written.values():
        expected = layout.flat_refs(
            (("i", written.ids), ("n", written.names), ("m", written.codeless))
        )
        for folds in (written.folds, {}):
            native = _native_refs(written.after, folds, normalise_name, buckets, ROLE_CODES)
            assert _refs(native) == _refs(expected)
            assert len(native) == len(expected)
