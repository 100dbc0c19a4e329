"""Operations on the Redis index. Correct under duplicates, reordering, crashes and rebuilds.

On a standalone Redis, a batch of list changes takes two commands whatever its size: one script
reads every stored record, one script applies every change atomically — the newest event time,
compare-and-set by version, counters, refs added and removed, activations. redis-py spends
~25 µs of client CPU per command and ~1 µs per argument, so each script takes two arguments
whatever the batch (the keys are built in Lua from bucket numbers). A change whose record
moved between the two scripts (another worker wrote it) is redone the per-slot way below.

On Redis Cluster a script may touch one slot only, so a batch takes six pipelined round trips
(the per-slot path):

1. read the stored records (to drop stale versions early and know the refs they hold);
2. add the refs the new versions need (before the record, so a crash never leaves a
   record without its refs; a ref without its record is harmless: matching is re-checked
   against the record in :func:`sanctiongate.domain.decisions.match_subject`);
3. compare-and-set each record by version, in a Lua script that also moves the per-bucket
   counters (one slot: atomic);
4. remove the refs the winners no longer need, and schedule future activations;
5. settle: read each entry's record again and add any ref it lacks (racing writers on one
   entry can remove a ref the final record needs; see :meth:`SanctionIndex._settle`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ..domain.catalogue import Catalogue
from ..domain.decisions import CHINA_STANDARD_TIME, today_in_china
from ..domain.identifiers import normalise_name, normalise_names
from ..domain.models import ListChange, Measure, StoredEntry
from .client import run_script
from .layout import (
    BUCKET_KEY_LUA,
    REF_SEPARATOR,
    ROLE_CODES,
    ROLE_SEPARATOR,
    Layout,
    crc32_table,
    pack_ref,
    ref_field,
    unpack_refs,
)
from .lease import CLAIM_DUE, CLAIM_LEASE_SECONDS, SETTLE_DUE
from .records import (
    RECORD_FORMAT,
    Split,
    count_code,
    count_key,
    decode_body,
    decode_record,
    encode_record,
    may_hold_code,
    may_hold_identifier,
    packed_probe,
    split_record,
)
from .records import native_refs as _native_refs

_CAS_ENTRY = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local version = tonumber(ARGV[2])
if old then
  local old_version, old_field = string.match(old, '^(%d+)|([^|]*)|')
  if tonumber(old_version) >= version then return {0, old} end
  if old_field ~= '' then redis.call('HINCRBY', KEYS[2], old_field, -1) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
return {1, old or ''}
"""

_ADD_REF = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
local sep = ARGV[3]
if string.find(sep .. cur .. sep, sep .. ARGV[2] .. sep, 1, true) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cur .. sep .. ARGV[2])
return 1
"""

_REMOVE_REF = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local sep = ARGV[3]
local kept = {}
for ref in string.gmatch(cur, '([^' .. sep .. ']+)') do
  if ref ~= ARGV[2] then table.insert(kept, ref) end
end
if #kept == 0 then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, sep)) end
return 1
"""


# The newest applied event time: ARGV[1] epoch microseconds (compared), ARGV[2] its ISO text.
_NOTE_NEWEST = """
local current = tonumber(redis.call('HGET', KEYS[1], 'newest_event_us'))
if current and current >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'newest_event_us', ARGV[1], 'newest_event_time', ARGV[2])
return 1
"""

_ACTIVATION_CLAIM_LIMIT = 10_000

_SCRIPT_CHUNK = 2_000  # keys per read script: a 10,000-subject batch never holds Redis long

# Standalone Redis only: the fields of a candidate read. ARGV[1]: the generation's bucket base
# (Layout.bucket_base); ARGV[2]: JSON [bucket suffix, field, …], one pair per field read
# (Layout.bucket_suffix: base .. suffix is the bucket's key; false where absent), after the
# meta hash's flat field/value list when KEYS[1] (the meta) is given. Two arguments, not two
# per read: redis-py packs every argument of a command with a copy of the buffer so far (up to
# 6 kB), and the keys are not formatted in Python per read (~3 µs a subject); the suffixes are
# made once per bucket (layout._suffixes): formatting the bucket number and three
# concatenations per key cost Redis 0.8 µs a subject. The keys are not declared, so never on a
# Cluster (there ``per_slot`` reads key by key).
_READ_JOINED = """
local base = ARGV[1]
local wanted = cjson.decode(ARGV[2])
local found = {}
if KEYS[1] then found[1] = redis.call('HGETALL', KEYS[1]) end
local n = #found
for i = 1, #wanted, 2 do
  n = n + 1
  found[n] = redis.call('HGET', base .. wanted[i], wanted[i + 1])
end
return found
"""

# Standalone Redis only: a check's whole read in one script, _READ_JOINED's refs and then the
# records they name. ARGV[1], ARGV[2] and KEYS[1] as _READ_JOINED's, ARGV[3] the bucket count.
# Returns the meta's flat list (when KEYS[1]), one ref per read (false where absent), then for
# each distinct entry id the refs name, in the order first named: the id and its record (false
# where absent). The record's bucket is Layout.bucket (CRC-32 of the id's UTF-8 bytes, modulo
# the bucket count), here with a table-driven CRC-32 on Lua's bit library (tested against
# zlib's). One round trip instead of two for a check that finds something, and atomic: the
# refs and the records come from one state of the index, under the meta read with them.
_READ_CANDIDATES = (
    """
local base = ARGV[1]
local wanted = cjson.decode(ARGV[2])
local buckets = tonumber(ARGV[3])
local found = {}
if KEYS[1] then found[1] = redis.call('HGETALL', KEYS[1]) end
local n = #found
local ids, seen = {}, {}
for i = 1, #wanted, 2 do
  local refs = redis.call('HGET', base .. wanted[i], wanted[i + 1])
  n = n + 1
  found[n] = refs
  if refs then
    for ref in string.gmatch(refs, '[^\\30]+') do
      local id = string.match(ref, '^[^\\31]*')
      if not seen[id] then
        seen[id] = true
        ids[#ids + 1] = id
      end
    end
  end
end
if #ids > 0 then
  local crc_table = {CRC_TABLE}
  local bxor, band, rshift, byte = bit.bxor, bit.band, bit.rshift, string.byte
  for _, id in ipairs(ids) do
    local crc = -1
    for j = 1, #id do
      crc = bxor(rshift(crc, 8), crc_table[band(bxor(crc, byte(id, j)), 255) + 1])
    end
    crc = bxor(crc, -1)
    if crc < 0 then crc = crc + 4294967296 end
    n = n + 1
    found[n] = id
    n = n + 1
    found[n] = redis.call('HGET', base .. (crc % buckets) .. '}:e', id)
  end
end
return found
"""
).replace("CRC_TABLE", ", ".join(str(crc) for crc in crc32_table()))

# Standalone Redis only: the counter buckets summed inside Redis, as a flat field/total list
# (one command, not one HGETALL per bucket: /metrics and the monitor ask for this often).
# ARGV[1]: the generation's bucket base, ARGV[2]: the bucket count; the keys are built here
# (4,096 key arguments cost the client ~7 ms of CPU to format and pack, per scrape).
_SUM_COUNTS = (
    """
local base = ARGV[1]
"""
    + BUCKET_KEY_LUA
    + """
local totals = {}
for b = 0, tonumber(ARGV[2]) - 1 do
  local flat = redis.call('HGETALL', bucket_key(b, 'c'))
  for j = 1, #flat, 2 do
    totals[flat[j]] = (totals[flat[j]] or 0) + tonumber(flat[j + 1])
  end
end
local out = {}
for field, total in pairs(totals) do
  out[#out + 1] = field
  out[#out + 1] = total
end
return out
"""
)

# Standalone Redis only (one script touches keys of thousands of slots, so it names them in
# Lua rather than in KEYS: three arguments for any batch instead of ~6 per change).
# ARGV[1]: one JSON object {"base" (Layout.bucket_base), "sep", "rsep" (REF_ and
# ROLE_SEPARATOR), "meta", "activations" (keys), "newest_us", "newest_time" (the newest event
# time of the batch, noted first: as_of must never be older than what a check can see),
# "changes": [[bucket, entry_id, version, expected stored version (-1: none), count field,
# refs to add, refs to remove, activation ('z' schedule at epoch, 'r' unschedule, '' nothing),
# epoch, record length]…]}, a ref list flat (kind 'i', 'n' or 'm', bucket, field, role code)…;
# ARGV[2]: the records of all changes, one after the other, as bytes (no escaping, no
# decoding on either side). Returns per change: 1 applied, 0 stale (a version as new is
# stored), -1 the stored record is not the one read (redo it).
_APPLY_BATCH = (
    """
local batch = cjson.decode(ARGV[1])
local records = ARGV[2]
local base, sep, rsep = batch.base, batch.sep, batch.rsep
local activations = batch.activations
"""
    + BUCKET_KEY_LUA
    + """
local current = tonumber(redis.call('HGET', batch.meta, 'newest_event_us'))
if not current or current < tonumber(batch.newest_us) then
  redis.call('HSET', batch.meta, 'newest_event_us', batch.newest_us,
             'newest_event_time', batch.newest_time)
end
local function ref_of(entry_id, code)  -- layout.pack_ref: the entry_id alone for the subject
  if code == '' then return entry_id end
  return entry_id .. rsep .. code
end
local function add_ref(key, field, ref)
  -- most fields of a bulk listing are new: one command for them, not a read and a write
  if redis.call('HSETNX', key, field, ref) == 1 then return end
  local cur = redis.call('HGET', key, field)
  if string.find(sep .. cur .. sep, sep .. ref .. sep, 1, true) then return end
  redis.call('HSET', key, field, cur .. sep .. ref)
end
local function remove_ref(key, field, ref)
  local cur = redis.call('HGET', key, field)
  if not cur then return end
  local kept = {}
  for r in string.gmatch(cur, '([^' .. sep .. ']+)') do
    if r ~= ref then table.insert(kept, r) end
  end
  if #kept == 0 then redis.call('HDEL', key, field)
  else redis.call('HSET', key, field, table.concat(kept, sep)) end
end
local out = {}
local at = 1
for i, change in ipairs(batch.changes) do
  local bucket, entry_id, version, expected = change[1], change[2], change[3], change[4]
  local count_field, adds, removes = change[5], change[6], change[7]
  local first = at
  at = at + change[10]
  local entries, counts = bucket_key(bucket, 'e'), bucket_key(bucket, 'c')
  local old = redis.call('HGET', entries, entry_id)
  local old_version, old_field = -1, ''
  if old then
    local v, f = string.match(old, '^(%d+)|([^|]*)|')
    old_version, old_field = tonumber(v), f
  end
  if old_version >= version then
    out[i] = 0
  elseif old_version ~= expected then
    out[i] = -1
  else
    for j = 1, #adds, 4 do
      add_ref(bucket_key(adds[j + 1], adds[j]), adds[j + 2], ref_of(entry_id, adds[j + 3]))
    end
    if old_field ~= '' then redis.call('HINCRBY', counts, old_field, -1) end
    redis.call('HSET', entries, entry_id, string.sub(records, first, at - 1))
    if count_field ~= '' then redis.call('HINCRBY', counts, count_field, 1) end
    for j = 1, #removes, 4 do
      remove_ref(
        bucket_key(removes[j + 1], removes[j]), removes[j + 2], ref_of(entry_id, removes[j + 3])
      )
    end
    if change[8] == 'z' then redis.call('ZADD', activations, change[9], entry_id)
    elseif change[8] == 'r' then redis.call('ZREM', activations, entry_id) end
    out[i] = 1
  end
end
return out
"""
)


class IndexUnavailable(Exception):
    """The index cannot answer now: Redis is unreachable, the index is wiped or rebuilding."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class GenerationChanged(Exception):
    """The index switched generation while a read was in flight: retry with the new one."""


@dataclass(frozen=True, slots=True)
class IndexMeta:
    gen: str | None
    state: str | None
    newest_event_time: datetime | None
    measures_rev: int
    fields: dict[str, str]

    @property
    def record_format(self) -> str:
        """The record format of the serving generation ("1": written before formats had a
        number)."""
        return self.fields.get("format", "1")

    @property
    def readable(self) -> bool:
        """The serving generation is in the format this code reads (else it must be rebuilt)."""
        return self.record_format == RECORD_FORMAT

    @property
    def ready(self) -> bool:
        """A generation serves, in a format we read, and no rebuild is under way (SPEC §5)."""
        return self.gen is not None and self.state != "rebuilding" and self.readable

    def rebuild_ends(self) -> dict[str, dict[str, int]]:
        """Per topic and partition, the offset the last rebuild replayed up to."""
        return orjson.loads(self.fields.get("rebuild_ends", "{}"))

    def workers(self) -> dict[str, dict]:
        return {k[2:]: orjson.loads(v) for k, v in self.fields.items() if k.startswith("w:")}


@dataclass(frozen=True, slots=True)
class ActivationClaim:
    gen: str
    lease_until: float
    entry_ids: list[str]


@dataclass(slots=True)
class AppliedChange:
    change: ListChange
    before: StoredEntry | None
    after: StoredEntry


@dataclass(slots=True)
class ApplyResult:
    applied: list[AppliedChange] = field(default_factory=list)
    stale: list[ListChange] = field(default_factory=list)
    # Newer than the stored version but overtaken by a later version in the same batch: applied
    # in effect (what they leave behind, a removed listing's history, is kept), never written.
    overtaken: list[ListChange] = field(default_factory=list)

    @property
    def newest_event_time(self) -> datetime | None:
        return max((a.change.event_time for a in self.applied), default=None)


@dataclass(frozen=True, slots=True)
class _Batch:
    changes: list[ListChange]  # the highest version of each entry in the batch
    earlier: dict[str, list[ListChange]]  # entry id → its lower versions in the batch
    # entry id → what its highest version writes, for the upserts worked out ahead
    written: dict[str, Written] = field(default_factory=dict)
    duplicates: tuple[ListChange, ...] = ()  # versions seen twice: stale whatever is stored

    def writes(self, after: StoredEntry) -> Written:
        """What ``after`` (a planned version) writes: worked out ahead for an upsert
        (:meth:`PreparedBatch.steps`; ``_plan`` takes its ``after`` from there), here for a
        remove, whose record depends on what is stored."""
        return self.written.get(after.entry_id) or Written.of(after)


@dataclass(slots=True)
class Written:
    """What one version writes: its record (with its count code) and the keys it is found
    under. An upsert's does not depend on what is stored, so the ingest works it out while
    Redis applies the batch before (:meth:`SanctionIndex.prepare`). The keys are worked out
    when asked for: a new listing's refs come from :func:`_native_refs` without them."""

    after: StoredEntry
    code: str
    record: bytes
    folds: dict[str, str]  # names of its batch, folded at once (normalise_names)
    _keys: tuple[set[tuple[str, str]], ...] | None = None

    @classmethod
    def of(cls, after: StoredEntry, folds: dict[str, str] | None = None) -> Written:
        code = count_code(after)
        return cls(after, code, encode_record(after, code), {} if folds is None else folds)

    def fold(self, name: str) -> str:
        folded = self.folds.get(name)
        return normalise_name(name) if folded is None else folded

    def keys(self) -> tuple[set[tuple[str, str]], ...]:
        """(identifier, role), (folded name, role) and code-less (folded name, role) pairs."""
        if self._keys is None:
            ids, names = self.after.index_keys(self.fold)
            self._keys = (ids, names, self.after.codeless_name_keys(self.fold))
        return self._keys

    @property
    def ids(self) -> set[tuple[str, str]]:
        return self.keys()[0]

    @property
    def names(self) -> set[tuple[str, str]]:
        return self.keys()[1]

    @property
    def codeless(self) -> set[tuple[str, str]]:
        return self.keys()[2]


class PreparedBatch:
    """A batch of list changes made ready to apply without Redis (:meth:`SanctionIndex.prepare`).
    ``steps`` works out what the upserts will write, a few at a time, so a caller can give the
    event loop back in between; whatever it has not done yet, :meth:`SanctionIndex.apply_prepared`
    does first. Applying changes nothing else in it: a batch whose apply failed is applied again
    as it is. The per-slot (Cluster) path uses the records worked out, not the rest."""

    __slots__ = ("batch",)

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch

    def steps(self, every: int) -> Iterator[None]:
        written = self.batch.written
        upserts = [c for c in self.batch.changes if c.op == "upsert" and c.entry_id not in written]
        # Every name of the batch folded in one pass: an eighth of the cost of one at a time.
        names = [name for change in upserts for name in _names_of(change)]
        folds = dict(zip(names, normalise_names(names), strict=True))
        for n, change in enumerate(upserts, 1):
            written[change.entry_id] = Written.of(StoredEntry.from_change(change, None), folds)
            if n % every == 0:
                yield

    def complete(self) -> None:
        """Whatever ``steps`` has not worked out yet, at once."""
        for _ in self.steps(len(self.batch.changes) + 1):
            pass


def _names_of(change: ListChange) -> Iterator[str]:
    entry = change.entry
    if entry is not None:
        yield entry.subject.name
        for person in entry.related_persons:
            yield person.name


def _version(change: ListChange) -> int:
    return change.version


def new_generation() -> str:
    return f"g{time.time_ns() // 1_000_000:x}"


_EPOCH_DAY = date(1970, 1, 1).toordinal()
_CST_SECONDS = 8 * 3600
assert CHINA_STANDARD_TIME.utcoffset(None) == timedelta(seconds=_CST_SECONDS)


def _activation_epoch(stored: StoredEntry) -> float | None:
    """The epoch second a black listing starts: midnight of ``effective_from`` in China."""
    entry = stored.entry
    if stored.removed or entry is None or entry.polarity != "black":
        return None
    return float((entry.effective_from.toordinal() - _EPOCH_DAY) * 86400 - _CST_SECONDS)


class SanctionIndex:
    def __init__(
        self,
        redis: Redis,
        layout: Layout | None = None,
        serve_during_rebuild: bool = False,
        per_slot: bool | None = None,
    ) -> None:
        """``per_slot``: apply list changes with one-slot scripts only (Redis Cluster). By
        default, true exactly when ``redis`` is a cluster client."""
        self.redis = redis
        self.layout = layout or Layout()
        self.serve_during_rebuild = serve_during_rebuild
        self.per_slot = isinstance(redis, RedisCluster) if per_slot is None else per_slot
        self._cas = redis.register_script(_CAS_ENTRY)
        self._add_ref = redis.register_script(_ADD_REF)
        self._remove_ref = redis.register_script(_REMOVE_REF)
        self._apply_batch = redis.register_script(_APPLY_BATCH)
        self._read_joined = redis.register_script(_READ_JOINED)
        self._read_candidates = redis.register_script(_READ_CANDIDATES)
        self._sum_counts = redis.register_script(_SUM_COUNTS)
        self._note_newest = redis.register_script(_NOTE_NEWEST)
        self._claim_due = redis.register_script(CLAIM_DUE)
        self._settle_due = redis.register_script(SETTLE_DUE)

    # --- meta --------------------------------------------------------------------------------

    async def read_meta(self) -> IndexMeta:
        raw = await self.redis.hgetall(self.layout.meta)
        return _meta_from(raw)

    async def serving_meta(self) -> IndexMeta:
        """The meta of an index that may answer checks, or :class:`IndexUnavailable`."""
        try:
            meta = await self.read_meta()
        except (RedisError, OSError) as exc:
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        check_serving(meta, self.serve_during_rebuild)
        return meta

    async def record_worker(self, worker: str, status: dict) -> None:
        await self.redis.hset(self.layout.meta, f"w:{worker}", orjson.dumps(status))

    async def note_newest(self, newest: datetime) -> None:
        """Keep the newest applied event time (monotonic across workers): one script, a max
        on its epoch microseconds beside the ISO time readers use."""
        micros = (newest - _EPOCH) // timedelta(microseconds=1)
        await self._note_newest(keys=[self.layout.meta], args=[micros, newest.isoformat()])

    # --- list changes ------------------------------------------------------------------------

    async def apply_changes(
        self, gen: str, changes: Sequence[ListChange], serving: bool = False
    ) -> ApplyResult:
        """Apply a batch of list changes to generation ``gen``.

        ``serving``: ``gen`` is the one the caller believes serves (the live ingest). The meta
        is read in the same round trip as the stored records, and :class:`GenerationChanged`
        is raised, with nothing written, when ``gen`` no longer serves in this code's format
        (wiped, switched by a rebuild, written by another version): the caller finds out what
        happened (:class:`streams.ingest.GenerationWatch`) and retries. A rebuild writing a
        generation that does not serve yet leaves it false.
        """
        return await self.apply_prepared(gen, self.prepare(changes), serving)

    @staticmethod
    def prepare(changes: Sequence[ListChange]) -> PreparedBatch:
        """The part of applying ``changes`` that needs no Redis: the highest version of each
        entry, and (through :meth:`PreparedBatch.steps`) what each upsert will write."""
        latest: dict[str, ListChange] = {}
        earlier: dict[str, list[ListChange]] = {}  # lower versions of an entry in this batch
        duplicates: list[ListChange] = []
        for change in changes:
            held = latest.get(change.entry_id)
            if held is None or change.version > held.version:
                if held is not None:
                    earlier.setdefault(change.entry_id, []).append(held)
                latest[change.entry_id] = change
            elif change.version == held.version:
                duplicates.append(change)
            else:
                earlier.setdefault(change.entry_id, []).append(change)
        return PreparedBatch(_Batch(list(latest.values()), earlier, {}, tuple(duplicates)))

    async def apply_prepared(
        self, gen: str, prepared: PreparedBatch, serving: bool = False
    ) -> ApplyResult:
        """:meth:`apply_changes` of a batch :meth:`prepare` made ready."""
        prepared.complete()  # what the caller's steps left, if any
        plan = prepared.batch
        result = ApplyResult(stale=list(plan.duplicates))
        if not plan.changes:
            return result
        if self.per_slot:
            await self._apply_per_slot(gen, plan, result, serving)
        else:
            await self._apply_in_one_script(gen, plan, result, serving)
        return result

    async def _plan(
        self,
        gen: str,
        batch: _Batch,
        stored_before: Sequence[bytes | None],
        result: ApplyResult,
    ) -> list[AppliedChange]:
        """The changes newer than their stored record, with the record each one will write:
        what applying the batch's versions of the entry one by one would leave (a ``remove``
        keeps the listing of an ``upsert`` it overtook in the same batch, for the history)."""
        plans: list[AppliedChange] = []
        replayed: list[StoredEntry] = []
        for change, raw in zip(batch.changes, stored_before, strict=True):
            before = decode_record(raw, change.entry_id)
            stored_version = -1 if before is None else before.version
            previous = before
            lower = batch.earlier.get(change.entry_id)
            for overtaken in sorted(lower, key=_version) if lower else ():
                if overtaken.version > stored_version:  # so is ``change``, newer still
                    previous = StoredEntry.from_change(overtaken, previous)
                    result.overtaken.append(overtaken)
                else:
                    result.stale.append(overtaken)
            if change.version <= stored_version:
                result.stale.append(change)
                if before is not None and change.version == before.version:
                    replayed.append(before)
                continue
            written = batch.written.get(change.entry_id)  # an upsert's, worked out ahead
            after = written.after if written else StoredEntry.from_change(change, previous)
            plans.append(AppliedChange(change, before, after))
        if replayed:
            # The very version stored, read again (a crash or a rebalance replays a batch that
            # had passed its compare-and-set): finish its last step, which is idempotent.
            pipe = self.redis.pipeline(transaction=False)
            for stored in replayed:
                self._queue_activation(pipe, gen, stored, stored)
            await pipe.execute()
        return plans

    async def _apply_in_one_script(
        self, gen: str, batch: _Batch, result: ApplyResult, serving: bool
    ) -> None:
        changes = batch.changes
        layout = self.layout
        base = layout.bucket_base(gen)
        buckets = [layout.bucket(c.entry_id) for c in changes]
        meta, stored_before = await self._read_fields(
            gen, layout.record_reads(c.entry_id for c in changes), meta=serving
        )
        if serving:
            _still_serving(meta, gen)
        plans = await self._plan(gen, batch, stored_before, result)
        if not plans:
            return
        bucket_of = dict(zip((c.entry_id for c in changes), buckets, strict=True))
        newest = max(plan.change.event_time for plan in plans)

        now = time.time()
        rows: list[list] = []
        records: list[bytes] = []
        for plan in plans:
            after, before = plan.after, plan.before
            entry_id = after.entry_id
            epoch = _activation_epoch(after)
            if epoch is not None and epoch > now:
                activation = "z"
            elif before is not None and _activation_epoch(before) is not None:
                activation = "r"  # only a version that could have been scheduled left a member
            else:
                activation = ""
            writes = batch.writes(after)
            adds, removes = self._ref_args(writes, before)
            code = writes.code
            record = writes.record
            records.append(record)
            rows.append(
                [
                    bucket_of[entry_id],
                    entry_id,
                    after.version,
                    -1 if before is None else before.version,
                    code,
                    adds,
                    removes,
                    activation,
                    epoch or 0,
                    len(record),
                ]
            )
        message = {
            "base": base,
            "sep": REF_SEPARATOR,
            "rsep": ROLE_SEPARATOR,
            "meta": layout.meta,
            "activations": layout.activations(gen),
            "newest_us": str((newest - _EPOCH) // timedelta(microseconds=1)),
            "newest_time": newest.isoformat(),
            "changes": rows,
        }
        outcomes = await self._apply_batch(args=[orjson.dumps(message), b"".join(records)])

        moved: list[ListChange] = []
        for plan, outcome in zip(plans, outcomes, strict=True):
            if outcome == 1:
                result.applied.append(plan)
            elif outcome == 0:  # another worker applied a newer version meanwhile
                result.stale.append(plan.change)
            else:
                moved.append(plan.change)
        if moved:  # another worker wrote an older version meanwhile: read again, one by one
            await self._apply_per_slot(gen, _Batch(moved, {}), result)

    def _ref_args(
        self, writes: Written, before: StoredEntry | None
    ) -> tuple[list[str | int], list[str | int]]:
        """The refs ``writes`` needs that ``before`` holds not, and those ``before`` holds that
        ``writes`` no longer needs: flat (kind, bucket, field, role code) lists."""
        if before is None and _native_refs is not None:
            refs = _native_refs(
                writes.after, writes.folds, normalise_name, self.layout.buckets, ROLE_CODES
            )
            if refs is not None:  # None: more parties than a listing holds, Python's to do
                return refs, []
        ids, names, codeless = writes.keys()
        if before is None:
            return self._flat_refs(ids, names, codeless), []
        old_ids, old_names = before.index_keys()
        old_codeless = before.codeless_name_keys()
        return (
            self._flat_refs(ids - old_ids, names - old_names, codeless - old_codeless),
            self._flat_refs(old_ids - ids, old_names - names, old_codeless - codeless),
        )

    def _flat_refs(
        self,
        ids: Iterable[tuple[str, str]],
        names: Iterable[tuple[str, str]],
        codeless: Iterable[tuple[str, str]],
    ) -> list[str | int]:
        return self.layout.flat_refs((("i", ids), ("n", names), ("m", codeless)))

    async def _apply_per_slot(
        self, gen: str, batch: _Batch, result: ApplyResult, serving: bool = False
    ) -> None:
        changes = batch.changes
        stored_before = await self._read_stored(gen, changes, serving)
        plans = await self._plan(gen, batch, stored_before, result)
        if plans:
            await self._add_needed_refs(gen, plans)
            # as_of must never be older than what a check can see: note the event time first.
            await self.note_newest(max(plan.change.event_time for plan in plans))
            won = await self._compare_and_set(gen, batch, plans, result)
            await self._drop_replaced_refs(gen, won)
        await self._settle(gen, [change.entry_id for change in changes])

    async def _read_stored(
        self, gen: str, changes: Sequence[ListChange], serving: bool
    ) -> list[bytes | None]:
        layout = self.layout
        pipe = self.redis.pipeline(transaction=False)
        for change in changes:
            pipe.hget(layout.entries(gen, change.entry_id), change.entry_id)
        if serving:
            pipe.hgetall(layout.meta)
        stored_before = await pipe.execute()
        if serving:
            _still_serving(stored_before.pop(), gen)
        return stored_before

    async def _add_needed_refs(self, gen: str, plans: Sequence[AppliedChange]) -> None:
        """Before the record: a crash never leaves a record without its refs."""
        pipe = self.redis.pipeline(transaction=False)
        for plan in plans:
            await self._queue_refs(pipe, gen, plan.after, self._add_ref, exclude=plan.before)
        await pipe.execute()

    async def _compare_and_set(
        self, gen: str, batch: _Batch, plans: Sequence[AppliedChange], result: ApplyResult
    ) -> list[AppliedChange]:
        """Write each record unless a version as new is stored; the winners, each with the
        record it replaced as ``before``."""
        layout = self.layout
        pipe = self.redis.pipeline(transaction=False)
        for plan in plans:
            entry_id = plan.after.entry_id
            writes = batch.writes(plan.after)
            await self._cas(  # queues on the pipeline (redis-py's async Script is a coroutine)
                keys=[layout.entries(gen, entry_id), layout.counts(gen, entry_id)],
                args=[entry_id, plan.after.version, writes.record, writes.code],
                client=pipe,
            )
        won: list[AppliedChange] = []
        for plan, (applied, replaced) in zip(plans, await pipe.execute(), strict=True):
            if not applied:  # another worker applied a newer version meanwhile
                result.stale.append(plan.change)
                continue
            plan.before = decode_record(replaced, entry_id=plan.after.entry_id)
            result.applied.append(plan)
            won.append(plan)
        return won

    async def _drop_replaced_refs(self, gen: str, won: Sequence[AppliedChange]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for plan in won:
            if plan.before is not None:
                await self._queue_refs(pipe, gen, plan.before, self._remove_ref, exclude=plan.after)
            self._queue_activation(pipe, gen, plan.after, plan.before)
        await pipe.execute()

    async def _settle(self, gen: str, entry_ids: Sequence[str]) -> None:
        """Give each entry's record as stored now every ref it needs.

        Writers racing on one entry can each be right and together wrong: one drops the refs
        of the record it replaced while another has just written a record that needs them
        again, or one skips adding a ref that the record it read held and a third writer has
        dropped since. Every writer settles after its last removal, so the last to settle
        reads the final record after every removal and restores what it lacks. Adding a ref
        that is there is a no-op; a writer that died before settling leaves its batch
        uncommitted, and the replay (stale by then) settles it.
        """
        layout = self.layout
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.hget(layout.entries(gen, entry_id), entry_id)
        stored = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, raw in zip(entry_ids, stored, strict=True):
            record = decode_record(raw, entry_id)
            if record is not None:
                await self._queue_refs(pipe, gen, record, self._add_ref, exclude=None)
        if len(pipe):
            await pipe.execute()

    async def _queue_refs(
        self, pipe, gen: str, stored: StoredEntry, script, exclude: StoredEntry | None
    ) -> None:  # type: ignore[no-untyped-def]
        ids, names = stored.index_keys()
        codeless = stored.codeless_name_keys()
        if exclude is not None:
            other_ids, other_names = exclude.index_keys()
            ids -= other_ids
            names -= other_names
            codeless -= exclude.codeless_name_keys()
        layout = self.layout
        for key_of, keys in (
            (layout.identifiers, ids),
            (layout.names, names),
            (layout.codeless_names, codeless),
        ):
            for key, role in keys:
                await script(
                    keys=[key_of(gen, key)],
                    args=[ref_field(key), pack_ref(stored.entry_id, role), REF_SEPARATOR],
                    client=pipe,
                )

    def _queue_activation(
        self, pipe, gen: str, stored: StoredEntry, replaced: StoredEntry | None
    ) -> None:  # type: ignore[no-untyped-def]
        key = self.layout.activations(gen)
        epoch = _activation_epoch(stored)
        if epoch is not None and epoch > time.time():
            pipe.zadd(key, {stored.entry_id: epoch})
        elif replaced is not None and _activation_epoch(replaced) is not None:
            # Only a version that could have been scheduled can have left a member to remove;
            # skipping the no-op ZREM saves one command per new listing on the hot path.
            pipe.zrem(key, stored.entry_id)

    async def due_activations(self, gen: str, now: float) -> ActivationClaim:
        """Lease the listings whose start has come (:mod:`.lease`):
        :meth:`settle_activations` once they are compared; if that never happens (the worker
        died), they are due again when the lease ends and another tick compares them."""
        lease_until = now + CLAIM_LEASE_SECONDS
        due = await self._claim_due(
            keys=[self.layout.activations(gen)], args=[now, _ACTIVATION_CLAIM_LIMIT, lease_until]
        )
        return ActivationClaim(gen, lease_until, [d.decode() for d in due])

    async def settle_activations(self, claim: ActivationClaim) -> None:
        """Forget the claimed activations, except those rescheduled meanwhile (a new version
        with a later start keeps its own score)."""
        if claim.entry_ids:
            await self._settle_due(
                keys=[self.layout.activations(claim.gen)],
                args=[claim.lease_until, 0, *claim.entry_ids],  # no set to move them to
            )

    # --- reads -------------------------------------------------------------------------------

    async def candidates(
        self, gen: str, lookups: Sequence[tuple[str | None, str]]
    ) -> tuple[IndexMeta, list[list[StoredEntry]]]:
        """For each (identifier or None, normalised name): the entries found under either key
        that could match it (with an identifier: those listing a party with that code or one
        without a code; see :func:`_could_match`).

        On a single Redis one round trip for any number of subjects: scripts of 2,000 keys
        each that read the refs and then the records they name (:data:`_READ_CANDIDATES`).
        Per slot (Cluster), two: the refs, then the records. Either way the meta is read with
        them, so a read that straddles a generation switch or a wipe is refused, never
        answered (refs without their records would make a listed subject pass).
        """
        # With an identifier, by name it can match only a party without a code: kind m.
        reads = self.layout.lookup_reads(lookups)
        if self.per_slot:
            raw_meta, refs = await self._read_fields(gen, reads)
            records: dict[str, bytes | None] = {}
        else:
            raw_meta, refs, records = await self._read_refs_and_records(gen, reads)
        meta = self._serving(raw_meta, gen)
        wanted = wanted_entry_ids(lookups, refs)
        if not any(wanted):
            return meta, [[] for _ in wanted]
        entry_ids = sorted(set().union(*wanted))
        unread = [entry_id for entry_id in entry_ids if entry_id not in records]
        if unread:  # per slot, always; on a single Redis, never (the script read them all)
            raw_meta, raws = await self._read_fields(gen, self.layout.record_reads(unread))
            self._serving(raw_meta, gen)
            records.update(zip(unread, raws, strict=True))
        raws = [records[entry_id] for entry_id in entry_ids]
        return meta, _could_match(lookups, wanted, entry_ids, raws)

    async def _read_refs_and_records(
        self, gen: str, reads: list[str]
    ) -> tuple[dict[bytes, bytes], list[bytes | None], dict[str, bytes | None]]:
        """Single Redis: the meta, the refs of ``reads`` (flat, as :meth:`_read_fields` takes
        them) and every record they name, by entry id, with :data:`_READ_CANDIDATES`. A read
        of more than one script (a big batch) is not atomic as a whole: the meta is read again
        after the last one, so a generation switch or a wipe in between is refused too."""
        layout = self.layout
        base, buckets = layout.bucket_base(gen), layout.buckets
        chunk = 2 * _SCRIPT_CHUNK
        starts = range(0, max(len(reads), 1), chunk)
        after = None
        if len(starts) == 1:  # every check, and batches of up to 1,000 subjects or so
            args = [base, orjson.dumps(reads), buckets]
            replies = [await run_script(self.redis, self._read_candidates, [layout.meta], args)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for start in starts:
                await self._read_candidates(
                    keys=[layout.meta] if start == 0 else [],
                    args=[base, orjson.dumps(reads[start : start + chunk]), buckets],
                    client=pipe,
                )
            pipe.hgetall(layout.meta)
            replies = await pipe.execute()
            after = replies.pop()
        refs: list[bytes | None] = []
        records: dict[str, bytes | None] = {}
        flat_meta = replies[0].pop(0)
        for start, reply in zip(starts, replies, strict=True):
            size = len(reads[start : start + chunk]) // 2
            refs.extend(reply[:size])
            named = reply[size:]
            records.update(zip((i.decode() for i in named[::2]), named[1::2], strict=True))
        raw_meta = dict(zip(flat_meta[::2], flat_meta[1::2], strict=True))
        if after is not None:
            self._serving(after, gen)
        return raw_meta, refs, records

    def _serving(self, raw_meta: dict[bytes, bytes], gen: str) -> IndexMeta:
        meta = _meta_from(raw_meta)
        check_serving(meta, self.serve_during_rebuild)
        if meta.gen != gen:
            raise GenerationChanged
        return meta

    async def _read_fields(
        self, gen: str, reads: list[str], meta: bool = True
    ) -> tuple[dict[bytes, bytes], list[bytes | None]]:
        """The meta hash (empty when ``meta`` is false) and, for each (bucket suffix, field) of
        ``reads``, that field of the bucket of ``gen`` whose key ends with the suffix
        (:meth:`.layout.Layout.bucket_suffix`: its number and kind ``e``, ``i``, ``n`` or
        ``m``). ``reads`` is flat, the pairs one after the other, as the read script takes them
        (:meth:`.layout.Layout.lookup_reads`): no tuple per read made, then taken apart.

        Per slot (Cluster) the meta is read last in the pipeline, so a wipe during the reads
        shows in it; on a single Redis the first script reads it atomically with its keys.
        """
        layout = self.layout
        pipe = self.redis.pipeline(transaction=False)
        base = layout.bucket_base(gen)
        if self.per_slot:
            for suffix, field_ in zip(reads[::2], reads[1::2], strict=True):
                pipe.hget(base + suffix, field_)
            if meta:
                pipe.hgetall(layout.meta)
            values = await pipe.execute()
            return (values.pop() if meta else {}), values
        chunk = 2 * _SCRIPT_CHUNK
        for start in range(0, max(len(reads), 1), chunk):
            await self._read_joined(
                keys=[layout.meta] if meta and start == 0 else [],
                args=[base, orjson.dumps(reads[start : start + chunk])],
                client=pipe,
            )
        chunks = await pipe.execute()
        values = [value for chunk in chunks for value in chunk]
        if not meta:
            return {}, values
        flat_meta = values.pop(0)
        return dict(zip(flat_meta[::2], flat_meta[1::2], strict=True)), values

    async def entries(self, gen: str, entry_ids: Iterable[str]) -> dict[str, StoredEntry]:
        entry_ids = list(entry_ids)
        if not entry_ids:
            return {}
        _, raws = await self._read_fields(gen, self.layout.record_reads(entry_ids), meta=False)
        found = {}
        for entry_id, raw in zip(entry_ids, raws, strict=True):
            stored = decode_record(raw, entry_id)
            if stored is not None:
                found[entry_id] = stored
        return found

    async def entries_for_identifier(self, gen: str, identifier: str) -> list[StoredEntry]:
        field_ = ref_field(identifier)
        raw = await self.redis.hget(self.layout.identifiers(gen, identifier), field_)
        refs = unpack_refs(raw)
        records = await self.entries(gen, {entry_id for entry_id, _ in refs})
        # A field may hold refs of another code too (layout.ref_field): keep this code's.
        return [
            records[e]
            for e in sorted(records)
            if any(code == identifier for code, _ in records[e].identifier_keys())
        ]

    async def counts(self, gen: str) -> dict[tuple[str, str], int]:
        layout = self.layout
        if self.per_slot:
            pipe = self.redis.pipeline(transaction=False)
            for bucket in range(layout.buckets):
                pipe.hgetall(layout.counts_of_bucket(gen, bucket))
            replies = await pipe.execute()
        else:
            flat = await self._sum_counts(args=[layout.bucket_base(gen), layout.buckets])
            replies = [dict(zip(flat[::2], flat[1::2], strict=True))]
        totals: dict[tuple[str, str], int] = {}
        for reply in replies:
            for raw_field, raw_count in reply.items():
                key = count_key(raw_field.decode())
                totals[key] = totals.get(key, 0) + int(raw_count)
        return {k: v for k, v in totals.items() if v}

    # --- measures ----------------------------------------------------------------------------

    async def put_measures(self, gen: str, measures: Iterable[Measure]) -> None:
        mapping = {m.measure_id: m.model_dump_json(by_alias=True) for m in measures}
        if mapping:
            await self.redis.hset(self.layout.measures(gen), mapping=mapping)
            await self.redis.hincrby(self.layout.meta, "measures_rev", 1)

    async def delete_measures(self, gen: str, measure_ids: Iterable[str]) -> None:
        ids = list(measure_ids)
        if ids:
            await self.redis.hdel(self.layout.measures(gen), *ids)
            await self.redis.hincrby(self.layout.meta, "measures_rev", 1)

    async def load_catalogue(self, gen: str) -> Catalogue:
        raw = await self.redis.hgetall(self.layout.measures(gen))
        return Catalogue(Measure.model_validate_json(v) for v in raw.values())

    # --- generations -------------------------------------------------------------------------

    async def acquire_rebuild_lock(self, holder: str, ttl_seconds: int = 60) -> bool:
        return bool(await self.redis.set(self.layout.rebuild_lock, holder, nx=True, ex=ttl_seconds))

    async def refresh_rebuild_lock(self, holder: str, ttl_seconds: int = 60) -> None:
        if (await self.redis.get(self.layout.rebuild_lock) or b"").decode() == holder:
            await self.redis.expire(self.layout.rebuild_lock, ttl_seconds)

    async def release_rebuild_lock(self, holder: str) -> None:
        if (await self.redis.get(self.layout.rebuild_lock) or b"").decode() == holder:
            await self.redis.delete(self.layout.rebuild_lock)

    async def mark_rebuilding(self, building: str) -> None:
        await self.redis.hset(
            self.layout.meta,
            mapping={"state": "rebuilding", "building": building, "rebuild_started_at": _now_iso()},
        )

    async def switch_generation(self, gen: str, ends: dict[str, dict[int, int]]) -> str | None:
        """Make ``gen`` the serving generation; returns the one it replaced."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.layout.meta, "gen")
        pipe.hset(
            self.layout.meta,
            mapping={
                "gen": gen,
                "state": "ready",
                "rebuild_ends": orjson.dumps(ends, option=orjson.OPT_NON_STR_KEYS),
                "format": RECORD_FORMAT,  # of the records this code wrote into ``gen``
                "switched_at": _now_iso(),
            },
        )
        pipe.hdel(self.layout.meta, "building")
        pipe.hincrby(self.layout.meta, "measures_rev", 1)
        previous, *_ = await pipe.execute()
        return previous.decode() if previous else None

    async def drop_generation(self, gen: str) -> int:
        dropped = 0
        async for key in self.redis.scan_iter(
            match=self.layout.generation_pattern(gen), count=1000
        ):
            dropped += await self.redis.unlink(key)
        return dropped


def wanted_entry_ids(
    lookups: Sequence[tuple[str | None, str]], refs: Sequence[bytes | None]
) -> list[set[str]]:
    """Per lookup, the entry ids its refs name; ``refs`` hold the identifier ref (when the
    lookup has an identifier) then the name ref of each lookup, in order."""
    wanted: list[set[str]] = []
    add = wanted.append
    position = 0
    for identifier, _ in lookups:
        first = refs[position]
        if identifier:
            second = refs[position + 1]
            position += 2
        else:
            second = None
            position += 1
        if not first and not second:  # most lookups of a batch: found under neither key
            add(set())
            continue
        ids: set[str] = set()
        for raw in (first, second):
            if raw:
                # The entry ids of unpack_refs, without mapping the roles (not needed here).
                text = raw.decode() if isinstance(raw, bytes) else raw
                ids.update([ref.partition(ROLE_SEPARATOR)[0] for ref in text.split(REF_SEPARATOR)])
        add(ids)
    return wanted


def _could_match(
    lookups: Sequence[tuple[str | None, str]],
    wanted: list[set[str]],
    entry_ids: list[str],
    raws: list[bytes | None],
) -> list[list[StoredEntry]]:
    """Per lookup, the stored entries (of ``wanted``) that could match it.

    A record read for a subject with a code may list parties that all carry other codes (it
    came by a code-less party's name that another version no longer has, or its code is
    another's that shares the ref field): it can match in no way, so no model is built for
    it, and most are not even split (:func:`may_hold_code` on the raw bytes, then
    :func:`may_hold_identifier` on the codes; the text is inflated only for what is built). Each
    record is parsed and built at most once, however many lookups want it.
    """
    raw_of = {e: raw for e, raw in zip(entry_ids, raws, strict=True) if raw}
    bodies: dict[str, tuple[bytes, Split]] = {}
    built: dict[str, StoredEntry] = {}

    def body(entry_id: str) -> tuple[bytes, Split]:
        split = bodies.get(entry_id)
        if split is None:
            split = bodies[entry_id] = split_record(raw_of[entry_id])
        return split

    found: list[list[StoredEntry]] = []
    for (identifier, _), ids in zip(lookups, wanted, strict=True):
        if not ids:  # most subjects of a batch: no probe packed for them
            found.append([])
            continue
        code = packed_probe(identifier) if identifier else b""
        entries = []
        for entry_id in ids:  # the order as ever (the set's)
            raw = raw_of.get(entry_id)
            if raw is None:
                continue
            if identifier and not (
                may_hold_code(raw, code) and may_hold_identifier(body(entry_id)[1], identifier)
            ):
                continue
            stored = built.get(entry_id)
            if stored is None:
                stored = built[entry_id] = decode_body(*body(entry_id), entry_id)
            entries.append(stored)
        found.append(entries)
    return found


def check_serving(meta: IndexMeta, during_rebuild: bool = False) -> None:
    """May this index answer checks? :class:`IndexUnavailable` says why not.

    SPEC §4/§5: while the index is rebuilding, no check answers (503, never ``pass``). A
    requested rebuild leaves the complete current generation serving beside the new one and
    the workers keep it current, so an operator may choose to keep answering from it
    (``SANCTIONGATE_SERVE_DURING_REBUILD=true``); a wiped index never answers.
    """
    if meta.gen is None:
        raise IndexUnavailable(
            "index_not_built",
            "the index is empty or was wiped; a running worker rebuilds it by itself",
        )
    if meta.state == "rebuilding" and not during_rebuild:
        raise IndexUnavailable(
            "index_rebuilding", "the index is being rebuilt; checks resume at the switch"
        )
    if not meta.readable:
        # Written by another version of sanctiongate: its records would read wrong or not at
        # all, and a wrong read could let a listed subject pass. A worker rebuilds it.
        raise IndexUnavailable(
            "index_format",
            f"the index is in record format {meta.record_format}, this version reads"
            f" {RECORD_FORMAT}; a worker is rebuilding it",
        )


def _still_serving(raw_meta: dict[bytes, bytes], gen: str) -> None:
    """May a live writer still write into ``gen``? Unlike a reader's check
    (:meth:`SanctionIndex._serving`) a rebuild under way is no reason to stop (the serving
    generation is kept current beside the new one), and a wipe is the caller's to heal."""
    meta = _meta_from(raw_meta)
    if meta.gen != gen or not meta.readable:
        raise GenerationChanged(gen)


def _meta_from(raw: dict[bytes, bytes]) -> IndexMeta:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    newest = fields.get("newest_event_time")
    return IndexMeta(
        gen=fields.get("gen"),
        state=fields.get("state"),
        newest_event_time=datetime.fromisoformat(newest) if newest else None,
        measures_rev=int(fields.get("measures_rev", "0")),
        fields=fields,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


__all__ = [
    "ApplyResult",
    "GenerationChanged",
    "IndexMeta",
    "IndexUnavailable",
    "SanctionIndex",
    "check_serving",
    "decode_record",
    "encode_record",
    "today_in_china",
]
