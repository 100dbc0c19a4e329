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


def assembled(cls: type[M], values: dict[str, Any]) -> M:
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
