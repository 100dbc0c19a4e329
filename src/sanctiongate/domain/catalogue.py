"""The measure catalogue (措施清单) and the question it answers: which measures apply?"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import orjson

from .models import Measure

WILDCARD = "*"


class Catalogue:
    """An immutable set of measures, indexed for the hot path.

    Immutable so that a run-time change (a ``sanction.measures`` message) swaps in a new
    catalogue atomically instead of mutating one a check may be reading.
    """

    def __init__(self, measures: Iterable[Measure] = ()) -> None:
        self._measures: dict[str, Measure] = {m.measure_id: m for m in measures}
        self._by_list_type: dict[str, list[Measure]] = {}
        for m in self._measures.values():
            for list_type in m.list_types:
                self._by_list_type.setdefault(list_type, []).append(m)
        self._applicable = lru_cache(maxsize=4096)(self._compute_applicable)

    def __len__(self) -> int:
        return len(self._measures)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._measures.values())

    def get(self, measure_id: str) -> Measure | None:
        return self._measures.get(measure_id)

    def with_measure(self, measure: Measure) -> Catalogue:
        return Catalogue([*(m for m in self if m.measure_id != measure.measure_id), measure])

    def without(self, measure_id: str) -> Catalogue:
        return Catalogue(m for m in self if m.measure_id != measure_id)

    def applicable(self, list_type: str, matter_category: str, role: str) -> tuple[Measure, ...]:
        """Measures that follow the list type, cover the matter category and the role."""
        return self._applicable(list_type, matter_category, role)

    def _compute_applicable(
        self, list_type: str, matter_category: str, role: str
    ) -> tuple[Measure, ...]:
        return tuple(
            m
            for m in self._by_list_type.get(list_type, ())
            if role in m.roles
            and (WILDCARD in m.matter_categories or matter_category in m.matter_categories)
        )


def parse_catalogue(raw: bytes) -> Catalogue:
    """A JSON array of Measure objects (SPEC §3)."""
    return Catalogue(Measure.model_validate(item) for item in orjson.loads(raw))


def default_catalogue_bytes() -> bytes:
    return resources.files("sanctiongate").joinpath("data/measures.json").read_bytes()
