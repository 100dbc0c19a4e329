"""The bulk loader without a broker: row → ListChange mapping, rejects, reading, dry runs."""

from __future__ import annotations

import argparse
import contextlib
import io
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

import orjson
import pytest

from sanctiongate.domain.identifiers import mask_identifier, uscc_check_char
from sanctiongate.domain.models import ListChange
from sanctiongate.loader import (
    COLUMNS,
    IDENTIFIER,
    Progress,
    RowRejected,
    Tally,
    classify_identifier,
    mask_row,
    org_code_check_char,
    parse_court_time,
    row_to_change,
    run_load,
)
from sanctiongate.settings import Settings
from tests.ids import id_number, uscc, with_bad_check

DATA = resources.files("sanctiongate") / "data"
SOURCE = "court:spc"


def court_row(**fields: str) -> dict[str, str]:
    row = {
        "案号": "（2025）京0105执5012号",
        "执行法院": "北京市朝阳区人民法院",
        "被执行人姓名/名称": "北京示例广告有限公司",
        "身份证号码/组织机构代码": "91110105MA01F3K72L",
        "法定代表人或者负责人姓名": "钱示例",
        "执行依据文号": "（2024）京0105民初31245号",
        "立案时间": "2025-02-11",
        "履行情况": "全部未履行",
        "失信被执行人行为具体情形": "有履行能力而拒不履行生效法律文书确定义务",
        "发布时间": "2025-05-16",
    }
    row.update(fields)
    return row


def rejection(**fields: str) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        row_to_change(court_row(**fields), SOURCE)
    return caught.value


# --- mapping ----------------------------------------------------------------------------------


def test_organisation_row_becomes_a_black_dishonest_debtor_upsert() -> None:
    change = row_to_change(court_row(), SOURCE).change
    assert change.op == "upsert" and change.source == SOURCE
    published = datetime(2025, 5, 15, 16, 0, tzinfo=UTC)  # 2025-05-16 00:00 in CST
    assert change.event_time == published
    assert change.version == int(published.timestamp()) * 10
    entry = change.entry
    assert entry is not None
    assert (entry.list_type, entry.polarity) == ("dishonest_judgment_debtor", "black")
    assert entry.subject.kind == "legal_person"
    assert entry.subject.uscc == "91110105MA01F3K72L" and entry.subject.id_number is None
    assert [(p.role, p.name, p.id_number) for p in entry.related_persons] == [
        ("legal_representative", "钱示例", None)
    ]
    assert entry.authority == "北京市朝阳区人民法院"
    assert "（2025）京0105执5012号" in entry.basis and "（2024）京0105民初31245号" in entry.basis
    assert entry.effective_from == date(2025, 5, 16)
    assert entry.effective_until is None and entry.disputed is False


def test_the_message_on_the_wire_validates_as_list_change_v1() -> None:
    change = row_to_change(court_row(), SOURCE).change
    wire = orjson.loads(change.model_dump_json(by_alias=True))
    assert wire["schema"] == "list_change/v1"
    assert ListChange.model_validate(wire) == change


def test_individual_business_operator_is_its_principal() -> None:
    body = "92110105MA01F3K72"
    code = body + uscc_check_char(body)
    entry = row_to_change(court_row(**{IDENTIFIER: code}), SOURCE).change.entry
    assert entry is not None
    assert entry.subject.kind == "individual_business"
    assert [p.role for p in entry.related_persons] == ["principal"]


def test_natural_person_is_keyed_by_id_number_and_has_no_representative() -> None:
    number = id_number("110108", "19820904")
    mapped = row_to_change(court_row(**{"被执行人姓名/名称": "沈示例", IDENTIFIER: number}), SOURCE)
    entry = mapped.change.entry
    assert entry is not None
    assert entry.subject.kind == "natural_person" and entry.subject.id_number == number
    assert entry.related_persons == []
    assert number not in mapped.change.entry_id
    assert mask_identifier(number) not in mapped.change.entry_id


def test_old_15_digit_id_gives_the_same_entry_as_its_18_digit_form() -> None:
    old = "110105800101123"
    new = classify_identifier(old).value
    assert len(new) == 18 and new.startswith("11010519800101123")
    first = row_to_change(court_row(**{IDENTIFIER: old}), SOURCE).change
    second = row_to_change(court_row(**{IDENTIFIER: new}), SOURCE).change
    assert first.entry_id == second.entry_id
    assert first.entry is not None and first.entry.subject.id_number == new


def test_entry_id_is_deterministic_per_case_and_subject() -> None:
    one = row_to_change(court_row(), SOURCE).change
    again = row_to_change(court_row(**{"发布时间": "2026-01-01"}), SOURCE).change
    spaced = row_to_change(court_row(**{"案号": " (2025)京0105执5012号 "}), SOURCE).change
    other_case = row_to_change(court_row(**{"案号": "（2025）京0105执5013号"}), SOURCE).change
    other_subject = row_to_change(court_row(**{IDENTIFIER: uscc()}), SOURCE).change
    assert one.entry_id == again.entry_id == spaced.entry_id
    assert len({one.entry_id, other_case.entry_id, other_subject.entry_id}) == 3
    assert len(one.entry_id) <= 128


def test_fully_performed_row_is_a_repaired_remove_that_outranks_the_same_days_listing() -> None:
    listed = row_to_change(court_row(), SOURCE).change
    repaired = row_to_change(court_row(**{"履行情况": "全部履行"}), SOURCE).change
    assert repaired.op == "remove" and repaired.reason == "repaired" and repaired.entry is None
    assert repaired.entry_id == listed.entry_id
    assert repaired.version == listed.version + 1
    relisted = row_to_change(court_row(**{"发布时间": "2025-05-17"}), SOURCE).change
    assert relisted.version > repaired.version


@pytest.mark.parametrize("performance", ["部分未履行", "全部未履行", "", "情况不明"])
def test_anything_but_full_performance_keeps_the_listing(performance: str) -> None:
    assert row_to_change(court_row(**{"履行情况": performance}), SOURCE).change.op == "upsert"


def test_later_publication_supersedes() -> None:
    early = row_to_change(court_row(), SOURCE).change
    late = row_to_change(court_row(**{"发布时间": "2025年06月10日"}), SOURCE).change
    assert late.version > early.version


@pytest.mark.parametrize(
    "text", ["2025-06-10", "2025年06月10日", "2025/6/10", "20250610", "２０２５－０６－１０"]
)
def test_court_dates_in_their_published_forms(text: str) -> None:
    assert parse_court_time(text, "发布时间").date() == date(2025, 6, 10)


def test_publication_time_of_day_is_kept() -> None:
    assert parse_court_time("2025-06-10 09:30:05", "发布时间").hour == 9


# --- identifiers ------------------------------------------------------------------------------


def test_identifier_failing_its_check_is_kept_and_flagged() -> None:
    code = with_bad_check(uscc())
    mapped = row_to_change(court_row(**{IDENTIFIER: code}), SOURCE)
    assert mapped.subject.check_ok is False
    assert mapped.change.entry is not None
    assert mapped.change.entry.identifier_anomalies() == ["entry.subject.uscc"]


def test_old_organisation_code_is_kept_by_name_only() -> None:
    assert org_code_check_char("D2143569") == "X"  # GB 11714's worked example
    mapped = row_to_change(court_row(**{IDENTIFIER: "D2143569-X"}), SOURCE)
    subject = mapped.change.entry.subject if mapped.change.entry else None
    assert subject is not None and subject.kind == "legal_person"
    assert subject.uscc is None and subject.id_number is None
    assert mapped.subject.kind == "org_code" and mapped.subject.check_ok
    assert classify_identifier("D21435690").check_ok is False


@pytest.mark.parametrize(
    "value",
    [
        "37020219850312451",  # 17 digits
        "1101051982****0125",  # masked as on the public site
        "110105198302301234",  # digits only: impossible birth date, and no USCC either
        "91110105MA01F3K7",  # 16 characters
        "9111010SMA01F3K72L",  # S is not in the USCC alphabet
    ],
)
def test_malformed_identifier_rejects_the_row_without_echoing_it(value: str) -> None:
    rejected = rejection(**{IDENTIFIER: value})
    assert rejected.reason == "malformed_identifier"
    assert value not in rejected.message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("被执行人姓名/名称", "", "missing_field"),
        ("案号", "  ", "missing_field"),
        ("执行法院", "", "missing_field"),
        ("身份证号码/组织机构代码", "", "missing_field"),
        ("发布时间", "", "missing_field"),
        ("立案时间", "2024-02-30", "invalid_date"),
        ("发布时间", "2025-13-01", "invalid_date"),
        ("发布时间", "昨天", "invalid_date"),
        ("发布时间", "1900-01-01", "invalid_date"),
    ],
)
def test_bad_rows_are_rejected_with_their_reason(field: str, value: str, reason: str) -> None:
    rejected = rejection(**{field: value})
    assert rejected.reason == reason
    assert field in rejected.message


def test_a_row_the_model_refuses_is_rejected_without_the_id_number() -> None:
    number = id_number()
    rejected = rejection(**{IDENTIFIER: number, "被执行人姓名/名称": "名" * 301})
    assert rejected.reason == "invalid_row"
    assert "name" in rejected.message and number not in rejected.message


def test_rejected_raw_row_masks_id_numbers_but_not_usccs() -> None:
    number = id_number()
    raw = mask_row(court_row(**{IDENTIFIER: number, "失信被执行人行为具体情形": f"担保人{number}"}))
    assert number not in str(raw)
    assert raw[IDENTIFIER] == mask_identifier(number)
    assert mask_identifier(number) in str(raw["失信被执行人行为具体情形"])
    assert mask_row(court_row())[IDENTIFIER] == "91110105MA01F3K72L"
    short = mask_row(court_row(**{IDENTIFIER: "37020219850312451"}))[IDENTIFIER]
    assert "19850312" not in str(short)


# --- files, dry runs, rejects ---------------------------------------------------------------


def load(path: Path, tmp_path: Path) -> tuple[int, Path]:
    rejects = tmp_path / "rejects.jsonl"
    args = argparse.Namespace(file=str(path), source=SOURCE, rejects=str(rejects), dry_run=True)
    return run_load(Settings(_env_file=None), args), rejects


@pytest.mark.parametrize("name", ["court_dishonest_sample.csv", "court_dishonest_sample.jsonl"])
def test_dry_run_of_the_shipped_sample(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rejects = load(Path(str(DATA / name)), tmp_path)
    out = capsys.readouterr().out
    assert code == 0
    assert "read: 28" in out and "valid: 25 (upsert 25, remove 0" in out
    assert "rejected: 3 (invalid_date 1, malformed_identifier 1, missing_field 1)" in out
    lines = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["row"], r["reason"]) for r in lines] == [
        (12, "malformed_identifier"),
        (14, "invalid_date"),
        (16, "missing_field"),
    ]
    assert lines[0]["raw"]["案号"] == "（2025）鲁0202执1946号"
    assert "37020219850312451" not in rejects.read_text()
    assert "43010419790620031X" not in rejects.read_text()


def test_csv_and_jsonl_samples_give_the_same_changes() -> None:
    from sanctiongate.loader import open_source

    def changes(name: str) -> list[ListChange]:
        source = open_source(Path(str(DATA / name)))
        found = []
        for _, row, problem in source.rows:
            if problem is None:
                with contextlib.suppress(RowRejected):
                    found.append(row_to_change(row, SOURCE).change)
        source.close()
        return found

    csv_changes = changes("court_dishonest_sample.csv")
    assert len(csv_changes) == 25
    assert csv_changes == changes("court_dishonest_sample.jsonl")


def test_csv_with_bom_crlf_and_odd_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = court_row()
    lines = [
        ",".join(COLUMNS),
        ",".join(good[c] for c in COLUMNS),
        "",
        ",".join(good[c] for c in COLUMNS) + ",多余",
    ]
    path = tmp_path / "records.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    code, rejects = load(path, tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and "read: 2" in out and "valid: 1" in out
    [reject] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert (reject["row"], reject["reason"]) == (2, "malformed_row")


def test_jsonl_with_a_broken_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = id_number()
    path = tmp_path / "records.jsonl"
    path.write_bytes(
        orjson.dumps(court_row())
        + b"\n\n"
        + f'{{"案号": "x", "身份证号码/组织机构代码": "{number}"'.encode()
        + b"\n[1, 2]\n"
    )
    code, rejects = load(path, tmp_path)
    assert code == 0
    assert "valid: 1" in capsys.readouterr().out
    found = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["row"], r["reason"]) for r in found] == [
        (3, "malformed_json"),
        (4, "malformed_json"),
    ]
    assert number not in rejects.read_text()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("records.csv", "name,id\n张三,1\n".encode()),  # a CSV without the court's columns
        ("records.txt", b"hello\nworld\n"),  # neither CSV nor JSONL
        ("records.csv", ",".join(COLUMNS).encode("gbk") + b"\n"),  # not UTF-8
    ],
)
def test_unknown_format_exits_2(name: str, content: bytes, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert load(path, tmp_path)[0] == 2


def test_missing_file_exits_2(tmp_path: Path) -> None:
    assert load(tmp_path / "absent.csv", tmp_path)[0] == 2


def test_format_is_sniffed_without_a_known_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes(orjson.dumps(court_row()) + b"\n")
    assert load(path, tmp_path)[0] == 0
    assert "valid: 1" in capsys.readouterr().out


def test_progress_without_a_tty_prints_a_line_every_n_rows() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total_bytes=1000, every=2)
    tally = Tally()
    for n in range(1, 6):
        tally.read = n
        progress.update(tally, position=lambda n=n: n * 200)
    progress.finish(tally, position=lambda: 1000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # after rows 2 and 4, and the final count
    assert "5 rows" in lines[-1] and "100%" in lines[-1]
    assert "\r" not in stream.getvalue()


def test_a_non_utf8_row_deep_in_the_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = ",".join(court_row()[c] for c in COLUMNS)
    path = tmp_path / "records.csv"
    body = "\n".join([",".join(COLUMNS), *[good] * 600]).encode()  # past the sniffed head
    path.write_bytes(body + b"\n" + good.encode("gbk") + b"\n")
    assert len(body) > 64 * 1024
    assert load(path, tmp_path)[0] == 2
    captured = capsys.readouterr()
    # Rows decoded before the bad block were handled (re-loading them later is a no-op).
    read = int(captured.out.split("read: ")[1].split()[0])
    assert 0 < read <= 600
    assert "not UTF-8" in captured.err


def test_progress_on_a_tty_redraws_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream, total_bytes=1000)
    tally = Tally(read=3)
    progress.update(tally, position=lambda: 500)
    progress.finish(tally, position=lambda: 1000)
    text = stream.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 1
    assert " 50%" in text and "100%" in text


def test_identifier_reading_agrees_with_parse_any() -> None:
    from sanctiongate.domain.identifiers import parse_any
    from sanctiongate.loader import _parse

    all_digit_uscc = "12100000400000398" + uscc_check_char("12100000400000398")
    values = [uscc(), id_number(), with_bad_check(uscc()), with_bad_check(id_number())]
    values += [all_digit_uscc, "110105800101123", "11010519800101123" + "0"]
    for value in values:
        assert _parse(value) == parse_any(value), value
