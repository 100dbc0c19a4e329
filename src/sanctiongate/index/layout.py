"""Where everything lives in Redis. One file, so the layout can be read in one place.

Everything that a rebuild recreates lives under a *generation* ``gen`` (a time-based id): a
rebuild writes a fresh generation and switches ``{p}:meta``'s ``gen`` field to it in one
command, so readers never see a half-built index. Within a generation, records are spread over
``buckets`` small hashes (compact in memory, listpack-encoded when small) chosen by CRC32 of
the field.

Memory: a hash stays listpack-encoded (a few bytes of overhead per field instead of ~100 B as a
hashtable) while it holds at most ``hash-max-listpack-entries`` fields (Redis default 512) of at
most ``hash-max-listpack-value`` bytes (default 64). 4,096 buckets keep ~2M entries under 512
per bucket. Refs are mostly short; records (~150–250 B) are not, so record buckets are listpack
only where the operator raises ``hash-max-listpack-value`` (docs/operations.md; deploy/stack.sh
sets it). The bucket count is part of the record format (:data:`.records.RECORD_FORMAT`): a
generation in another format is rebuilt, never read.

=============================  =====  ==========================================================
key                            type   content
=============================  =====  ==========================================================
``{p}:meta``                   hash   ``gen``, ``state`` (ready | rebuilding), ``format`` (of
                                      ``gen``'s records and layout), ``newest_event_time`` (and
                                      ``newest_event_us``), ``measures_rev``, ``rebuild_ends``,
                                      ``w:<worker>`` status
``{p}:{g.b}:e``                hash   entry_id → ``version|count-code|body`` (:mod:`.records`)
``{p}:{g.b}:c``                hash   count code (polarity, list type) → active entries (same
                                      slot as ``e``)
``{p}:{g.b}:i``                hash   :func:`ref_field` of an identifier → ``entry_id␟role-code␞…``
                                      (USCC / ID number refs; :func:`pack_ref`)
``{p}:{g.b}:n``                hash   :func:`ref_field` of a normalised name → the same
``{p}:{g.b}:m``                hash   the same, for the parties without a code only: what a
                                      check *with* a code reads by name (a name match counts
                                      only against a party without one, SPEC §4), so a common
                                      name's hundreds of coded listings are never read for it
``{p}:{g}:measures``           hash   measure_id → Measure JSON (default catalogue + topic)
``{p}:{g}:activations``        zset   entry_id scored by the epoch second its listing starts
                                      (a claimed one: by its lease's end; .lease)
``{p}:rebuild-lock``           string holder id, with a TTL: one rebuilder at a time
``{p}:req:{dept}:{request_id}`` string a decision, for idempotent retries (expires)
``{p}:dec:{dept}:{request_id}`` string the decision of a request (HTTP or stream), for
                                      ``approval_despite_block`` and idempotent stream decisions
``{p}:ap:{identifier}``        zset   approvals of a subject (look-back), scored by approval time
``{p}:{fb}:due``               zset   ``dept␟request_id`` of block/review decisions, by SLA due time
                                      (a claimed one: by its lease's end; .lease)
``{p}:{fb}:info``              hash   the same member → what an overdue alert needs (masked)
``{p}:{fb}:done``              zset   members whose feedback arrived, by arrival time
``{p}:{fb}:overdue``           zset   members past the SLA without feedback, by claim time
``{p}:alerted:{alert_id}``     string set once an alert was raised (replays raise nothing new)
=============================  =====  ==========================================================

Monitoring state (decisions, approvals, feedback) lives outside generations: a rebuild
replays the list topics, not the approval history, so it must survive a generation switch.

Redis Cluster: the braces are hash tags. A Lua script touches only keys of one tag (an entry
bucket and its counter hash; or one ref bucket), so every operation stays in one slot.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from zlib import crc32

REF_SEPARATOR = "\x1e"  # between refs of one field
ROLE_SEPARATOR = "\x1f"  # between entry_id and role inside one ref


@dataclass(frozen=True, slots=True)
class Layout:
    prefix: str = "sg"
    buckets: int = 4096

    def bucket(self, field: str) -> int:
        return crc32(field.encode()) % self.buckets

    def ref_place(self, key: str) -> tuple[int, str]:
        """(:meth:`bucket`, :func:`ref_field`) of a ref's key, encoding it once: the ingest
        works this out for every identifier and name of every change."""
        raw = key.encode()
        return crc32(raw) % self.buckets, _field_of(key, raw)

    def lookup_reads(self, lookups: Iterable[tuple[str | None, str]]) -> list[str]:
        """The reads of checks' lookups (identifier or None, normalised name), flat, as the read
        script takes them: per read its :meth:`bucket_suffix` then its field. With an
        identifier, its ``i`` ref then the name's ``m`` ref (a name can match only a party
        without a code); without, the name's ``n`` ref. :meth:`ref_place` of each key,
        inlined: a batch works out two places per subject, and the two calls a place cost a
        tenth of a batch's lookup."""
        buckets, short, b64, digest = self.buckets, _SHORT_FIELD, b2a_base64, blake2b
        by_id, by_codeless, by_name = (_suffixes(buckets, kind) for kind in "imn")
        reads: list[str] = []
        add = reads.extend
        for identifier, name in lookups:
            suffixes = by_name
            if identifier:
                raw = identifier.encode()
                field = identifier
                if len(raw) > short:
                    field = b64(digest(raw, digest_size=6).digest(), newline=False).decode()
                add((by_id[crc32(raw) % buckets], field))
                suffixes = by_codeless
            raw = name.encode()
            field = name
            if len(raw) > short:
                field = b64(digest(raw, digest_size=6).digest(), newline=False).decode()
            add((suffixes[crc32(raw) % buckets], field))
        return reads

    def flat_refs(self, groups: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> list[str | int]:
        """(kind, bucket, field, role code) of every (key, role) of every (kind, keys) group,
        flat, as the apply script takes them (:meth:`ref_place` and :func:`role_code` of each
        key, each key encoded once). A new record's refs come from the C encoder
        (``records.native_refs``); this serves replaced records, and builds without it."""
        buckets, roles = self.buckets, ROLE_CODES
        flat: list[str | int] = []
        add = flat.extend
        for kind, keys in groups:
            for key, role in keys:
                raw = key.encode()
                add((kind, crc32(raw) % buckets, _field_of(key, raw), roles.get(role, role)))
        return flat

    def record_reads(self, entry_ids: Iterable[str]) -> list[str]:
        """The reads of these entries' records, flat as :meth:`lookup_reads`'s."""
        suffixes, bucket = _suffixes(self.buckets, "e"), self.bucket
        return [x for entry_id in entry_ids for x in (suffixes[bucket(entry_id)], entry_id)]

    @staticmethod
    def bucket_suffix(bucket: int, kind: str) -> str:
        """What follows :meth:`bucket_base` in a bucket's key (:meth:`bucket_key`): the read
        script is given these (one concatenation per key in Lua, no number to format)."""
        return f"{bucket}}}:{kind}"

    # --- outside generations ----------------------------------------------------------------
    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def rebuild_lock(self) -> str:
        return f"{self.prefix}:rebuild-lock"

    def request(self, department: str, request_id: str) -> str:
        return f"{self.prefix}:req:{department}:{request_id}"

    def decision(self, department: str, request_id: str) -> str:
        return f"{self.prefix}:dec:{department}:{request_id}"

    def approvals(self, identifier: str) -> str:
        return f"{self.prefix}:ap:{identifier}"

    def feedback(self, part: str) -> str:
        """``due``, ``info``, ``done`` or ``overdue``: one hash tag, so scripts stay in one slot."""
        return f"{self.prefix}:{{fb}}:{part}"

    def alerted(self, alert_id: str) -> str:
        return f"{self.prefix}:alerted:{alert_id}"

    # --- inside a generation ----------------------------------------------------------------
    def bucket_base(self, gen: str) -> str:
        """What every bucket key of ``gen`` starts with: the key is this, the bucket number,
        ``}:`` and its kind (``e``, ``c``, ``i``, ``n`` or ``m``). The batch scripts of
        :mod:`.store` build bucket keys in Lua from it (:data:`BUCKET_KEY_LUA`)."""
        return f"{self.prefix}:{{{gen}."

    def bucket_key(self, gen: str, bucket: int, kind: str) -> str:
        return f"{self.bucket_base(gen)}{self.bucket_suffix(bucket, kind)}"

    def entries(self, gen: str, entry_id: str) -> str:
        return self.bucket_key(gen, self.bucket(entry_id), "e")

    def counts_of_bucket(self, gen: str, bucket: int) -> str:
        return self.bucket_key(gen, bucket, "c")

    def counts(self, gen: str, entry_id: str) -> str:
        return self.counts_of_bucket(gen, self.bucket(entry_id))

    def identifiers(self, gen: str, identifier: str) -> str:
        return self.bucket_key(gen, self.bucket(identifier), "i")

    def names(self, gen: str, name: str) -> str:
        return self.bucket_key(gen, self.bucket(name), "n")

    def codeless_names(self, gen: str, name: str) -> str:
        return self.bucket_key(gen, self.bucket(name), "m")

    def measures(self, gen: str) -> str:
        return f"{self.prefix}:{{{gen}}}:measures"

    def activations(self, gen: str) -> str:
        return f"{self.prefix}:{{{gen}}}:activations"

    def generation_pattern(self, gen: str) -> str:
        return f"{self.prefix}:{{{gen}*"


# A ref's role as a short code (one per listed party and key, so millions): ``subject`` is
# empty, the roles of related persons a digit; any other role (a slug: never empty nor a
# digit) as it is. Part of the index format (.records.RECORD_FORMAT).
ROLE_CODES = {
    "subject": "",
    "legal_representative": "1",
    "principal": "2",
    "responsible_person": "3",
}
_ROLES_BY_CODE = {code: role for role, code in ROLE_CODES.items()}


# The same key as Layout.bucket_key, in Lua: ``base`` from Layout.bucket_base, ``b`` a bucket
# number (a whole number: Lua prints it without a decimal point), ``kind`` e, c, i or n.
def crc32_table() -> list[int]:
    """The table of the byte-at-a-time CRC-32 that ``zlib.crc32`` computes (reflected,
    polynomial 0xEDB88320): the read script works out a record's :meth:`Layout.bucket` in Lua
    with it."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
        table.append(crc)
    return table


BUCKET_KEY_LUA = "local function bucket_key(b, kind) return base .. b .. '}:' .. kind end"


@lru_cache(maxsize=64)
def _suffixes(buckets: int, kind: str) -> tuple[str, ...]:
    """:meth:`Layout.bucket_suffix` of every bucket of a kind, made once."""
    return tuple(Layout.bucket_suffix(b, kind) for b in range(buckets))


def role_code(role: str) -> str:
    return ROLE_CODES.get(role, role)


def pack_ref(entry_id: str, role: str) -> str:
    """A ref as stored: the entry_id alone for the listed subject itself (most refs), else
    ``entry_id␟role-code``; the batch script builds the same from the entry_id and
    :func:`role_code`."""
    code = role_code(role)
    return f"{entry_id}{ROLE_SEPARATOR}{code}" if code else entry_id


_SHORT_FIELD = 8  # bytes: a ref field of this length or shorter is kept as it is


def ref_field(key: str) -> str:
    """The field of an ``i`` or ``n`` bucket that holds the refs of ``key`` (an identifier or
    a normalised name): the key itself when it is 8 bytes or shorter, else 8 characters of
    a 48-bit digest of it in base64 (printable ASCII: passes through JSON and Lua as it is;
    the C codec, ~1 µs). An 18-character code or a 40-byte company name costs 8 bytes per
    key, not 18 or 40.

    Two keys may share a field (a digest collision: at 2 million keys, one shared pair in
    about 140 indexes): their refs then sit in one list, which only adds candidates. Every
    reader re-checks what it found against the record (candidates: :func:`.records.may_hold_identifier` and
    ``match_subject``; :meth:`.store.SanctionIndex.entries_for_identifier`), so a shared field
    can never make a subject match another's listing."""
    return _field_of(key, key.encode())


def _field_of(key: str, raw: bytes) -> str:
    if len(raw) <= _SHORT_FIELD:
        return key
    return b2a_base64(blake2b(raw, digest_size=6).digest(), newline=False).decode()


def unpack_refs(value: bytes | str | None) -> list[tuple[str, str]]:
    if not value:
        return []
    text = value.decode() if isinstance(value, bytes) else value
    refs = []
    for ref in text.split(REF_SEPARATOR):
        entry_id, _, code = ref.partition(ROLE_SEPARATOR)
        refs.append((entry_id, _ROLES_BY_CODE.get(code, code)))
    return refs
