"""Models assembled from parts that are valid already, skipping pydantic's validation.

A decision is built from validated events, stored entries and measures plus values the rules
computed: validating it again (or ``model_construct``, which walks every field's aliases and
defaults in Python: slower than validating a small model) cost more than deciding it.
:func:`assembled` sets what ``model_construct`` sets (``__dict__``, the fields set, no extra, no
private state) and nothing else, so it is only for models without private attributes, post-init
hooks or ``extra="allow"``; ``values`` must name every field, defaults included, in field order
(tests/domain/test_decision_wire.py holds both, and that the result equals the validated model).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__


# Every field is set, so one set of all the field names per model serves every instance:
# assigning an attribute adds a name already in it (a batch built 10,000 sets, ~5% of it).
_all_fields: dict[type, set[str]] = {}


def assembled(cls: type[M], values: dict[str, Any]) -> M:
    model = cls.__new__(cls)
    fields = _all_fields.get(cls)
    if fields is None or len(fields) != len(values):
        fields = set(values)
        if fields == set(cls.model_fields):
            _all_fields[cls] = fields
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", fields)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
