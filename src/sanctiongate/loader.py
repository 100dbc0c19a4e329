"""Bulk loader for court dishonest-debtor records (失信被执行人名单): ``sanctiongate load FILE``.

Reads the Supreme People's Court's publication layout (案号, 执行法院, 被执行人姓名/名称,
身份证号码/组织机构代码, 法定代表人或者负责人姓名, 执行依据文号, 立案时间, 履行情况,
失信被执行人行为具体情形, 发布时间) as CSV (header row) or JSONL (one object per line, the same
keys), UTF-8 with or without BOM, and publishes one ``list_change/v1`` (SPEC §3) per good row to
``settings.topic_list_changes``, keyed by ``entry_id``. Every change is built through the
:class:`ListChange` model, so what reaches the topic has passed the same validation as the worker's.

Mapping of one row:

- ``entry_id`` = ``court-sx-`` + 20 hex of SHA-256 over the normalised case number (NFKC, no white
  space) and the subject key: the USCC, or for a natural person the *masked* ID number (the
  digest of a whole ID number could be brute-forced back from its masked form, so it never goes
  in), or ``org:`` + the old organisation code. The same row always gets the same id, and the
  15- and 18-digit forms of one ID number give the same id.
- ``version`` = 10 × epoch seconds of 发布时间 (read in China Standard Time) + 0 for an upsert,
  + 1 for a remove. Re-loading a file republishes the same versions, which the index ignores
  (a no-op); a row republished with a later 发布时间 supersedes; and a 全部履行 row published on the
  same day as the listing still removes it (its remove outranks the upsert of that 发布时间).
- ``op`` = ``remove`` with reason ``repaired`` when 履行情况 is 全部履行 (fully performed, also
  已全部履行); any other value, blank included, keeps the listing (dropping a court listing is
  worse than keeping it).
- upsert entry: ``list_type`` dishonest_judgment_debtor, ``polarity`` black, ``authority`` =
  执行法院, ``basis`` = 案号 and 执行依据文号, ``effective_from`` = 发布时间's date, no end date,
  not disputed. The subject by its identifier:
  18-character USCC → ``legal_person`` (``individual_business`` for registration code ``92``);
  resident ID number (18, or 15 converted) → ``natural_person``;
  old 9-character organisation code (组织机构代码, ``XXXXXXXX-X``) → ``legal_person``
  **by name only** (the index has no key for it; a name match answers ``review``, never
  ``block``), counted as ``name_only`` in the summary.
  法定代表人或者负责人姓名 → one related person (role ``legal_representative``, or ``principal`` for
  an individual business's operator), name only; ignored for a natural person.
- A well-formed identifier whose check character fails is kept (the worker flags it on the entry
  and counts it per source) and counted as ``flagged``. A malformed identifier, a missing
  required field (案号, 执行法院, 被执行人姓名/名称, 身份证号码/组织机构代码, 发布时间) or an
  impossible date (发布时间, 立案时间) rejects the row.

Output: rejected rows go to a JSONL file (``row``, ``reason``, ``message``, ``raw`` with every
ID-like number masked), a summary goes to stdout, progress goes to stderr (a redrawn bar on a
TTY, a line every :data:`PROGRESS_EVERY` rows otherwise). Exit codes: 0 when every row was handled
(rejects are not a failure), 1 when the broker did not take every change, 2 for a file that cannot
be read or is not in a known format.

Speed: the file is streamed, one :class:`AIOKafkaProducer` with large lingering batches takes
every change, and no send is awaited on its own: delivery results are counted from callbacks and
the producer is flushed once at the end. Missing topics are created first (as ``sanctiongate
topics`` does), because a broker that auto-creates topics would make ours without compaction.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import csv
import hashlib
import io
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Literal

import orjson
from pydantic import ValidationError

from .domain.identifiers import (
    Identifier,
    IdentifierError,
    IdentifierKind,
    mask_identifier,
    normalise_code,
    parse_any,
    parse_resident_id,
    parse_uscc,
)
from .domain.models import ListChange
from .settings import Settings

CST = timezone(timedelta(hours=8), "CST")
LIST_TYPE = "dishonest_judgment_debtor"
PROGRESS_EVERY = 100_000

# The columns of the court's publication, by their published names.
CASE_NO = "案号"
COURT = "执行法院"
NAME = "被执行人姓名/名称"
IDENTIFIER = "身份证号码/组织机构代码"
REPRESENTATIVE = "法定代表人或者负责人姓名"
BASIS_DOC = "执行依据文号"
FILED_ON = "立案时间"
PERFORMANCE = "履行情况"
CONDUCT = "失信被执行人行为具体情形"
PUBLISHED_ON = "发布时间"
COLUMNS = (
    CASE_NO,
    COURT,
    NAME,
    IDENTIFIER,
    REPRESENTATIVE,
    BASIS_DOC,
    FILED_ON,
    PERFORMANCE,
    CONDUCT,
    PUBLISHED_ON,
)
REQUIRED = (CASE_NO, COURT, NAME, IDENTIFIER, PUBLISHED_ON)
FULLY_PERFORMED = frozenset({"全部履行", "已全部履行"})

Format = Literal["csv", "jsonl"]


class LoadError(Exception):
    """The file as a whole cannot be loaded: unreadable, not UTF-8, or an unknown format."""


class RowRejected(Exception):
    """One row is bad input; it goes to the rejects file with a reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- identifiers ------------------------------------------------------------------------------

_ORG_CODE = re.compile(r"([0-9A-Z]{8})-?([0-9X])")
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_DIGITS_OR_X = re.compile(r"\d{17}[\dX]|\d{15}")


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """The row's identifier, classified: a USCC, a resident ID number or an old org code."""

    kind: Literal["uscc", "id_number", "org_code"]
    value: str  # normalised; a whole ID number — never log it
    check_ok: bool

    @property
    def public(self) -> str:
        """What may appear in an entry_id digest, a log or a reject: ID numbers masked."""
        if self.kind == "id_number":
            return mask_identifier(self.value)
        return f"org:{self.value}" if self.kind == "org_code" else self.value


def org_code_check_char(body: str) -> str:
    """Check character of a 组织机构代码 (GB 11714): 11 − Σ mod 11; 10 → X, 11 → 0."""
    total = sum(int(c, 36) * w for c, w in zip(body, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def classify_identifier(raw: str) -> SubjectKey:
    """USCC, resident ID (15 → 18) or 9-character organisation code; anything else is rejected."""
    value = normalise_code(raw)
    if "*" in value:
        raise RowRejected(
            "malformed_identifier",
            f"{IDENTIFIER} is masked (as on the public site); the loader needs the whole number",
        )
    org = _ORG_CODE.fullmatch(value)
    if org:
        body, check = org.groups()
        return SubjectKey("org_code", body + "-" + check, org_code_check_char(body) == check)
    try:
        parsed = _parse(value)
    except IdentifierError:
        raise _malformed(value) from None
    if parsed.kind is IdentifierKind.RESIDENT_ID:
        return SubjectKey("id_number", parsed.value, parsed.check_ok)
    if not parsed.check_ok and _DIGITS_OR_X.fullmatch(value):
        # Digits only, not a valid ID number and failing as a USCC too: a mistyped ID number far
        # more often than a USCC; keeping it as an organisation would list a person as a company.
        raise _malformed(value)
    return SubjectKey("uscc", parsed.value, parsed.check_ok)


def _parse(value: str) -> Identifier:
    """:func:`parse_any`, without its USCC reading when the ID reading already wins (it does
    whenever that reading is well-formed and its check digit holds): half the work on persons."""
    try:
        person = parse_resident_id(value)
    except IdentifierError:
        return parse_any(value)
    return person if person.check_ok else parse_any(value)


def _malformed(value: str) -> RowRejected:
    """The most telling reason: read digit-only values as ID numbers, others as USCCs."""
    parse = parse_resident_id if re.fullmatch(r"\d+X?", value) else parse_uscc
    try:
        parse(value)
        exc = IdentifierError("identifier_form", "neither a USCC nor a resident ID number")
    except IdentifierError as error:
        exc = error
    return RowRejected("malformed_identifier", f"{IDENTIFIER}: {exc.code}: {exc.message}")


# --- dates ------------------------------------------------------------------------------------

_DATE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:\s*[T ]\s*(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


@lru_cache(maxsize=4096)
def parse_court_time(text: str, column: str) -> datetime:
    """``2025-05-16``, ``2025/5/16``, ``2025年05月16日``, ``20250516``; optional ``HH:MM[:SS]``.

    Read in China Standard Time, as the court publishes.
    """
    value = unicodedata.normalize("NFKC", text).strip()
    match = _DATE.fullmatch(value) or _COMPACT_DATE.fullmatch(value)
    if match is None:
        raise RowRejected("invalid_date", f"{column}: not a date (YYYY-MM-DD or YYYY年MM月DD日)")
    parts = [int(p) if p else 0 for p in match.groups()]
    parts += [0] * (6 - len(parts))
    if not 1970 <= parts[0] <= 2100:
        raise RowRejected("invalid_date", f"{column}: year {parts[0]} is implausible")
    try:
        return datetime(*parts, tzinfo=CST)  # type: ignore[misc]
    except ValueError:
        raise RowRejected("invalid_date", f"{column}: impossible date {value}") from None


def change_version(published: datetime, op: Literal["upsert", "remove"]) -> int:
    """10 × epoch seconds of 发布时间, + 1 for a remove, so it outranks that day's upsert."""
    return int(published.timestamp()) * 10 + (1 if op == "remove" else 0)


def entry_id_for(case_no: str, subject: SubjectKey) -> str:
    folded = _fold(case_no)
    digest = hashlib.sha256(f"{folded}|{subject.public}".encode()).hexdigest()
    return f"court-sx-{digest[:20]}"


def _fold(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


# --- one row → one ListChange -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappedRow:
    change: ListChange
    subject: SubjectKey


def _text(row: Mapping[str, object], column: str) -> str:
    value = row.get(column)
    if type(value) is str:  # the common case first: this runs ten times a row
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowRejected("malformed_row", f"{column}: expected text, got {type(value).__name__}")
    return str(value).strip()


def _required(row: Mapping[str, object], column: str) -> str:
    value = _text(row, column)
    if not value:
        raise RowRejected("missing_field", f"{column} is empty")
    return value


def row_to_change(row: Mapping[str, object], source: str) -> MappedRow:
    """Map one court record to its ListChange; raises :class:`RowRejected` for bad input."""
    case_no = _required(row, CASE_NO)
    court = _required(row, COURT)
    name = _required(row, NAME)
    subject_key = classify_identifier(_required(row, IDENTIFIER))
    published = parse_court_time(_required(row, PUBLISHED_ON), PUBLISHED_ON)
    filed = _text(row, FILED_ON)
    if filed:
        parse_court_time(filed, FILED_ON)  # not carried, but an impossible date is bad input
    fully_performed = _fold(_text(row, PERFORMANCE)) in FULLY_PERFORMED
    op: Literal["upsert", "remove"] = "remove" if fully_performed else "upsert"
    message: dict[str, object] = {
        "schema": "list_change/v1",
        "op": op,
        "entry_id": entry_id_for(case_no, subject_key),
        "version": change_version(published, op),
        "event_time": published,
        "source": source,
    }
    if fully_performed:
        message["reason"] = "repaired"
    else:
        message["entry"] = _entry(row, case_no, court, name, subject_key, published)
    try:
        # One validation of the whole message: the same rules the worker applies on the topic.
        change = ListChange.model_validate(message)
    except ValidationError as exc:
        raise RowRejected("invalid_row", _describe(exc)) from None
    return MappedRow(change, subject_key)


def _entry(
    row: Mapping[str, object],
    case_no: str,
    court: str,
    name: str,
    key: SubjectKey,
    published: datetime,
) -> dict[str, object]:
    """The upsert's entry, as plain data for :class:`ListEntry` to validate."""
    subject: dict[str, object] = {"name": name}
    if key.kind == "id_number":
        subject |= {"kind": "natural_person", "id_number": key.value}
    elif key.kind == "uscc":
        business = key.value.startswith("92")
        subject |= {
            "kind": "individual_business" if business else "legal_person",
            "uscc": key.value,
        }
    else:
        subject["kind"] = "legal_person"  # old organisation code: by name only
    related: list[dict[str, str]] = []
    representative = _text(row, REPRESENTATIVE)
    if representative and key.kind != "id_number":
        role = "principal" if subject["kind"] == "individual_business" else "legal_representative"
        related.append({"role": role, "name": representative})
    basis_doc = _text(row, BASIS_DOC)
    return {
        "list_type": LIST_TYPE,
        "polarity": "black",
        "subject": subject,
        "related_persons": related,
        "authority": court,
        "basis": f"{case_no}；执行依据 {basis_doc}" if basis_doc else case_no,
        "effective_from": published.date(),
        "effective_until": None,
        "disputed": False,
    }


def _describe(exc: ValidationError) -> str:
    # Never str(exc): pydantic echoes the input, which may hold a whole ID number.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in exc.errors()
    )


# --- masking rejected rows --------------------------------------------------------------------

_ID_LIKE = re.compile(r"(?<![0-9])\d{14,17}[0-9Xx](?![0-9])")


def mask_row(row: Mapping[str, object]) -> dict[str, object]:
    """The raw row for the rejects file: the identifier column masked unless it is a USCC, and
    every ID-like run of digits elsewhere masked too."""
    masked: dict[str, object] = {}
    for column, value in row.items():
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = _ID_LIKE.sub(lambda m: mask_identifier(m.group()), str(value))
            if column == IDENTIFIER and not _is_public_uscc(text):
                text = mask_identifier(normalise_code(text))
            masked[str(column)] = text
        else:
            masked[str(column)] = value if value is None else "<not text>"
    return masked


def _is_public_uscc(text: str) -> bool:
    # A USCC with a letter cannot be a resident ID number; digit-only codes stay masked.
    value = normalise_code(text)
    return bool(re.fullmatch(r"[0-9A-HJ-NP-RTUW-Y]{18}", value)) and not value[:17].isdigit()


# --- reading ----------------------------------------------------------------------------------


Row = tuple[int, Mapping[str, object], RowRejected | None]
"""(record number, the record as read, why it is unusable as read or None)"""


@dataclass
class Source:
    """An open input file: its rows (number, record or rejection) and how far it has been read."""

    path: Path
    format: Format
    size: int
    position: Callable[[], int]
    rows: Iterator[Row]
    close: Callable[[], None]


def detect_format(path: Path, head: bytes) -> Format:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    text = head.decode("utf-8-sig", errors="ignore").lstrip()
    if text.startswith("{"):
        return "jsonl"
    if CASE_NO in text.split("\n", 1)[0]:
        return "csv"
    raise LoadError(f"unknown format: {path.name} is neither CSV with a {CASE_NO} column nor JSONL")


def open_source(path: Path) -> Source:
    try:
        binary = path.open("rb")
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        size = path.stat().st_size
        head = binary.read(64 * 1024)
        _check_utf8(head, path)
        fmt = detect_format(path, head)
        binary.seek(0)
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        rows = _csv_rows(text, path) if fmt == "csv" else _jsonl_rows(text)
    except OSError as exc:
        binary.close()
        raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    except LoadError:
        binary.close()
        raise
    return Source(path, fmt, size, binary.tell, rows, text.close)


def _check_utf8(head: bytes, path: Path) -> None:
    # An incremental decoder tolerates a multi-byte character cut at the end of the sample.
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        raise LoadError(f"{path.name} is not UTF-8 (a GBK export? convert it first)") from None


def _csv_rows(text: IO[str], path: Path) -> Iterator[Row]:
    first = text.readline()
    delimiter = "\t" if "\t" in first and "," not in first else ","
    header = [
        h.strip().lstrip("\ufeff") for h in next(csv.reader([first], delimiter=delimiter), [])
    ]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LoadError(f"unknown format: the CSV header of {path.name} lacks {', '.join(missing)}")
    return _csv_records(csv.reader(text, delimiter=delimiter), header)


def _csv_records(reader: Iterator[list[str]], header: list[str]) -> Iterator[Row]:
    number = 0
    width = len(header)
    for values in reader:
        if not any(v.strip() for v in values):
            continue  # blank line
        number += 1
        record: dict[str, object] = dict(zip(header, values, strict=False))
        if len(values) > width:
            record["(extra)"] = ",".join(values[width:])
            problem = f"{len(values)} fields where the header has {width}"
            yield number, record, RowRejected("malformed_row", problem)
            continue
        yield number, record, None


def _jsonl_rows(text: IO[str]) -> Iterator[Row]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        as_read = {"(line)": line.strip()[:2000]}
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, as_read, RowRejected("malformed_json", f"not JSON: {exc.msg}")
            continue
        if not isinstance(record, dict):
            yield number, as_read, RowRejected("malformed_json", "a line must be one JSON object")
            continue
        yield number, record, None


# --- output -----------------------------------------------------------------------------------


@dataclass
class Tally:
    read: int = 0
    valid: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)  # by identifier kind
    name_only: int = 0
    delivered: int = 0
    failed: int = 0
    first_failure: str | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def count_delivery(self, future: asyncio.Future[object]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed += 1
            if self.first_failure is None:
                self.first_failure = "cancelled" if future.cancelled() else repr(future.exception())
        else:
            self.delivered += 1


class Progress:
    """Plain-text progress on stderr: a bar redrawn on a TTY, a line every N rows otherwise."""

    def __init__(self, stream: IO[str], total_bytes: int, every: int = PROGRESS_EVERY) -> None:
        self.stream = stream
        self.total = max(total_bytes, 1)
        self.every = every
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._next_draw = 0.0
        self._printed_at = -1  # rows read when the last line was printed (not on a TTY)

    def update(self, tally: Tally, position: Callable[[], int], force: bool = False) -> None:
        """Called once a row; asks for the byte position only when it draws."""
        if self.tty:
            now = time.monotonic()
            if force or now >= self._next_draw:
                self._next_draw = now + 0.2
                self.stream.write("\r" + self.line(tally, position()))
                self.stream.flush()
        elif tally.read != self._printed_at and (force or tally.read % self.every == 0):
            self._printed_at = tally.read
            self.stream.write(self.line(tally, position()) + "\n")
            self.stream.flush()

    def line(self, tally: Tally, position: int) -> str:
        share = min(position / self.total, 1.0)
        filled = int(share * 30)
        rate = tally.read / max(time.monotonic() - self.started, 1e-6)
        return (
            f"[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%}  {tally.read:,} rows"
            f"  {rate:,.0f}/s  rejected {tally.rejected_total:,}"
        )

    def finish(self, tally: Tally, position: Callable[[], int]) -> None:
        self.update(tally, position, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summary(tally: Tally, topic: str | None, rejects: Path, elapsed: float) -> str:
    ops = f"upsert {tally.ops['upsert']}, remove {tally.ops['remove']}"
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(tally.rejected.items()))
    flagged = ", ".join(f"{k} {n}" for k, n in sorted(tally.flagged.items()))
    lines = [f"read: {tally.read}"]
    if topic is None:
        lines.append(f"valid: {tally.valid} ({ops}; dry run, nothing published)")
    else:
        lines.append(f"published: {tally.delivered} ({ops}) to {topic}")
        if tally.failed:
            lines.append(f"failed: {tally.failed} (first: {tally.first_failure})")
    lines += [
        f"rejected: {tally.rejected_total}" + (f" ({reasons})" if reasons else ""),
        f"flagged: {sum(tally.flagged.values())}"
        + (f" ({flagged}; check character fails, kept)" if flagged else ""),
        f"name_only: {tally.name_only}",
        f"rejects_file: {rejects}",
        f"elapsed: {elapsed:.1f}s ({tally.read / max(elapsed, 1e-6):,.0f} rows/s)",
    ]
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------


class Loader:
    """Streams one source into the topic (or nowhere, in a dry run), writing rejects as it goes."""

    def __init__(
        self, settings: Settings, source: Source, source_name: str, rejects: IO[bytes]
    ) -> None:
        self.settings = settings
        self.source = source
        self.source_name = source_name
        self.rejects = rejects
        self.tally = Tally()

    def _reject(self, number: int, row: Mapping[str, object], error: RowRejected) -> None:
        self.tally.rejected[error.reason] += 1
        line = {"row": number, "reason": error.reason, "message": error.message}
        self.rejects.write(orjson.dumps({**line, "raw": mask_row(row)}) + b"\n")

    def mapped(self, progress: Progress) -> Iterator[MappedRow]:
        for number, row, problem in self.source.rows:
            self.tally.read += 1
            if problem is not None:
                self._reject(number, row, problem)
            else:
                try:
                    mapped = row_to_change(row, self.source_name)
                except RowRejected as error:
                    self._reject(number, row, error)
                else:
                    self.tally.valid += 1
                    self.tally.ops[mapped.change.op] += 1
                    if not mapped.subject.check_ok:
                        self.tally.flagged[mapped.subject.kind] += 1
                    if mapped.subject.kind == "org_code" and mapped.change.op == "upsert":
                        self.tally.name_only += 1
                    yield mapped
            progress.update(self.tally, self.source.position)

    def dry_run(self, progress: Progress) -> None:
        for _ in self.mapped(progress):
            pass

    async def publish(self, progress: Progress) -> None:
        from aiokafka import AIOKafkaProducer

        from .topics import ensure_topics

        topic = self.settings.topic_list_changes
        # A broker that auto-creates topics would make ours without compaction: create it first.
        changes = await ensure_topics(self.settings)
        if changes.summary():
            print(f"topics {changes.summary()}", file=sys.stderr)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,  # a retried batch is not written twice, order kept per key
            linger_ms=50,
            max_batch_size=512 * 1024,
        )
        await producer.start()
        try:
            for sent, mapped in enumerate(self.mapped(progress), start=1):
                change = mapped.change
                future = await producer.send(
                    topic,
                    key=change.entry_id.encode(),
                    value=change.model_dump_json(by_alias=True).encode(),
                )
                future.add_done_callback(self.tally.count_delivery)
                if sent % 1000 == 0:
                    await asyncio.sleep(0)  # let the sender drain lingering batches
            await producer.flush()
        finally:
            await producer.stop()


def run_load(settings: Settings, args: argparse.Namespace) -> int:
    """``sanctiongate load FILE [--source S] [--rejects R] [--dry-run]``; returns the exit code."""
    path = Path(args.file)
    rejects_path = (
        Path(args.rejects) if args.rejects else path.with_name(path.name + ".rejects.jsonl")
    )
    started = time.monotonic()
    try:
        source = open_source(path)
    except LoadError as exc:
        print(f"sanctiongate load: {exc}", file=sys.stderr)
        return 2
    try:
        rejects = rejects_path.open("wb")  # truncated: a stale file from an earlier run misleads
    except OSError as exc:
        source.close()
        print(f"sanctiongate load: cannot write {rejects_path}: {exc.strerror}", file=sys.stderr)
        return 2
    loader = Loader(settings, source, args.source, rejects)
    progress = Progress(sys.stderr, source.size)
    code = _run(loader, progress, dry_run=args.dry_run)
    progress.finish(loader.tally, source.position)
    rejects.close()
    source.close()
    if loader.tally.failed and code == 0:
        code = 1
    topic = None if args.dry_run else settings.topic_list_changes
    print(summary(loader.tally, topic, rejects_path, time.monotonic() - started))
    return code


def _run(loader: Loader, progress: Progress, dry_run: bool) -> int:
    try:
        if dry_run:
            loader.dry_run(progress)
        else:
            asyncio.run(loader.publish(progress))
    except UnicodeDecodeError as exc:
        # Rows before this point are handled (re-loading is a no-op for them); the file is not.
        print(f"\nsanctiongate load: not UTF-8 (near byte {exc.start} of a block)", file=sys.stderr)
        return 2
    except OSError as exc:
        if _is_broker_error(exc):
            print(f"\nsanctiongate load: publishing failed: {exc!r}", file=sys.stderr)
            return 1
        print(f"\nsanctiongate load: I/O error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the broker: unreachable, or it refused the changes
        print(f"\nsanctiongate load: publishing failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


def _is_broker_error(exc: OSError) -> bool:
    return isinstance(exc, ConnectionError | TimeoutError)
