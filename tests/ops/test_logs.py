"""Structured JSON logs: the shape of a line, and no personal ID number in it."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from sanctiongate.logs import JsonFormatter, MaskIdNumbers, dict_config, mask_id_numbers
from tests.ids import id_number


@pytest.fixture
def capture() -> logging.Logger:
    logger = logging.getLogger("sanctiongate.test.logs")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskIdNumbers())
    logger.addHandler(handler)
    logger.stream = stream  # type: ignore[attr-defined]
    return logger


def lines(logger: logging.Logger) -> list[dict]:
    return [json.loads(line) for line in logger.stream.getvalue().splitlines()]  # type: ignore[attr-defined]


def test_one_json_object_per_line_with_extra_fields(capture: logging.Logger) -> None:
    capture.info("applied %d changes", 3, extra={"topic": "sanction.list.changes", "batch": 7})
    capture.warning("second line")
    first, second = lines(capture)
    assert first["level"] == "INFO" and first["logger"] == capture.name
    assert first["message"] == "applied 3 changes"
    assert first["topic"] == "sanction.list.changes" and first["batch"] == 7
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["message"] == "second line" and second["level"] == "WARNING"


def test_id_numbers_are_masked_in_message_args_extra_and_traceback(
    capture: logging.Logger,
) -> None:
    person, old_style = id_number(), "110105800101123"
    capture.info("subject %s checked", person, extra={"subject": {"id_number": person}})
    capture.info(f"legacy number {old_style} seen")
    try:
        raise ValueError(f"bad subject {person}")
    except ValueError:
        capture.exception("handler failed")
    text = capture.stream.getvalue()  # type: ignore[attr-defined]
    assert person not in text and old_style not in text
    first, second, third = lines(capture)
    masked = person[:6] + "********" + person[-4:]
    assert first["message"] == f"subject {masked} checked"
    assert first["subject"] == {"id_number": masked}
    assert second["message"] == "legacy number 110105*****1123 seen"
    assert masked in third["exception"] and "ValueError" in third["exception"]


def test_public_codes_and_other_numbers_are_left_alone() -> None:
    code = "91350203M0001QAY9B"  # a USCC: public, not masked
    assert mask_id_numbers(f"org {code}") == f"org {code}"
    assert mask_id_numbers("offset 1732355555123456789 ts 1732355555") == (
        "offset 1732355555123456789 ts 1732355555"
    )
    person = id_number()
    assert mask_id_numbers(f"{person},{person.lower()}") == ",".join(
        [person[:6] + "********" + person[-4:]] * 2
    )


def test_dict_config_routes_every_logger_through_the_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(dict_config("info"))
        person = id_number()
        logging.getLogger("uvicorn.error").info("started for %s", person)
        err = capsys.readouterr().err.strip().splitlines()
        [line] = [json.loads(x) for x in err if "uvicorn.error" in x]
        assert line["logger"] == "uvicorn.error" and person not in line["message"]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
