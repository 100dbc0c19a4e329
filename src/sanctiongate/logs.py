"""Structured logs: one JSON object per line, with personal ID numbers masked.

Every process (CLI, API, faust worker) logs through one root handler built here, so a log
shipper sees the same shape everywhere: ``ts``, ``level``, ``logger``, ``message``, then any
``extra=`` fields of the call, and ``exception`` when there is one.

ID numbers reach log lines in ways no code review catches (an exception that echoes a message,
a third-party library logging a payload), so masking happens on the handler, for every record,
not at the call sites.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from .domain.identifiers import mask_identifier

# An 18-character resident ID (17 digits + digit/X) or an old 15-digit one, standing alone:
# not part of a longer run of digits or letters (a USCC, a nanosecond timestamp, a hash).
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")

# Attributes every LogRecord has; whatever else is on a record came from ``extra=``
# (except uvicorn's ``color_message``, the same message with terminal colour codes).
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)


def mask_id_numbers(text: str) -> str:
    """``text`` with every ID-number-shaped run masked like ``110105********002X``."""
    return _ID_NUMBER.sub(lambda m: mask_identifier(m.group(0)), text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_id_numbers(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return mask_id_numbers(str(value))


class MaskIdNumbers(logging.Filter):
    """Masks ID numbers in the rendered message and in ``extra=`` fields of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_id_numbers(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS:
                setattr(record, name, _masked(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # The traceback text is rendered only here, after the filter ran: mask it too.
        return mask_id_numbers(orjson.dumps(line, default=str).decode())


def json_handler() -> logging.Handler:
    """A stderr handler writing masked JSON lines (also named by :func:`dict_config`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskIdNumbers())
    return handler


def configure(level: str = "INFO") -> None:
    """Make the root logger write masked JSON lines, replacing any handler it had."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level.upper())


def dict_config(level: str | None = None) -> dict[str, Any]:
    """The same set-up as :func:`configure`, for frameworks that take a ``dictConfig``.

    uvicorn (``log_config``, also applied in each ``--workers`` child process) and faust
    (``logging_config``) reconfigure logging themselves; with this they keep our JSON lines and
    send their own loggers through the root handler. ``level`` None keeps the root's level.
    """
    root: dict[str, Any] = {"handlers": ["json"]}
    if level is not None:
        root["level"] = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": "sanctiongate.logs.json_handler"}},
        "root": root,
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
