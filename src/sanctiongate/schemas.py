"""JSON Schemas of the messages (SPEC §3) and the OpenAPI document, generated from the models.

``sanctiongate schemas`` writes them to ``schemas/``; a test fails when the files drift from
the code. Messages that sanctiongate reads are described as it *accepts* them, messages it
writes as it *produces* them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .domain.models import (
    Alert,
    ApprovalEvent,
    Decision,
    Feedback,
    ListChange,
    Measure,
    Rejected,
)

MESSAGES: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
    "list_change.v1": (ListChange, "validation"),
    "measure.v1": (Measure, "validation"),
    "approval_event.v1": (ApprovalEvent, "validation"),
    "feedback.v1": (Feedback, "validation"),
    "decision.v1": (Decision, "serialization"),
    "alert.v1": (Alert, "serialization"),
    "rejected.v1": (Rejected, "serialization"),
}


def message_schema(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict:
    schema = model.model_json_schema(by_alias=True, mode=mode)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://sanctiongate.invalid/schemas/{model.__name__}.json"
    return schema


def openapi_document() -> dict[str, Any]:
    from .api.app import create_app
    from .settings import Settings

    return create_app(Settings()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def documents() -> dict[str, str]:
    out = {
        f"{name}.schema.json": render(message_schema(model, mode))
        for name, (model, mode) in MESSAGES.items()
    }
    out["openapi.json"] = render(openapi_document())
    return out


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in documents().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
