"""The monitoring ledger in Redis: decisions per request, approvals per subject, feedback due.

What automatic comparison and monitoring need to remember between events, kept apart from the
sanction index (see :mod:`.layout`): decisions (so a replayed ``submitted`` event republishes
the same decision, and an ``approved`` event knows whether its request was blocked), approvals
per identifier for the look-back window, and the feedback each block/review decision is owed.
Every multi-key script touches keys of one hash tag (``{fb}``), so it runs on Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ..domain.models import Decision, MaskedSubject
from ..domain.monitoring import Approval
from .client import run_script
from .layout import ROLE_SEPARATOR, Layout
from .lease import CLAIM_DUE, CLAIM_LEASE_SECONDS, SETTLE_DUE

_REGISTER_DUE = """
if redis.call('ZSCORE', KEYS[3], ARGV[1]) or redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  return 0
end
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

_FEEDBACK_RECEIVED = """
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[4], ARGV[1])
"""

# Standalone Redis only (keys of many slots): the look-back approvals of many subjects in one
# command, not one command each (redis-py spends ~25 µs of client CPU per command).
_APPROVALS_SINCE = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], '+inf', 'WITHSCORES')
end
return out
"""

# Standalone Redis only: keep each decision unless its request has one and, for a block or
# review kept here, start its feedback clock (as _REGISTER_DUE) in the same step, so a crash
# cannot leave a decision that owes no feedback. KEYS[1..4]: feedback due, info, done, overdue;
# KEYS[5..]: one decision key per decision. ARGV[1]: the TTL; ARGV[2..n+1]: the decisions'
# bodies; then four per feedback owed: the decision's position, member, due time, info (a pass
# owes none, and costs no arguments). Per decision: false when this call stored it, else the
# body already held.
_KEEP_FIRST_DECISIONS = """
local n = #KEYS - 4
local out = {}
for i = 1, n do
  if redis.call('SET', KEYS[i + 4], ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[i] = false
  else
    out[i] = redis.call('GET', KEYS[i + 4])
  end
end
for a = n + 2, #ARGV, 4 do
  local member = ARGV[a + 1]
  if out[tonumber(ARGV[a])] == false and not redis.call('ZSCORE', KEYS[3], member)
      and not redis.call('ZSCORE', KEYS[4], member)
      and redis.call('ZADD', KEYS[1], 'NX', ARGV[a + 2], member) == 1 then
    redis.call('HSET', KEYS[2], member, ARGV[a + 3])
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class OverdueFeedback:
    department: str
    request_id: str
    subject: MaskedSubject
    decision: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class OverdueClaim:
    claimed_at: float
    lease_until: float
    members: list[str]  # every member leased, with or without its info
    items: list[OverdueFeedback]  # those an alert can be raised for


def _member(department: str, request_id: str) -> str:
    return f"{department}{ROLE_SEPARATOR}{request_id}"


class Ledger:
    def __init__(
        self,
        redis: Redis,
        layout: Layout,
        *,
        lookback_seconds: float,
        feedback_sla_seconds: float,
        decision_ttl_seconds: int,
        per_slot: bool | None = None,
    ) -> None:
        """``per_slot``: one slot per command or script (Redis Cluster); by default, true
        exactly when ``redis`` is a cluster client."""
        self.redis = redis
        self.per_slot = isinstance(redis, RedisCluster) if per_slot is None else per_slot
        self.layout = layout
        self.lookback_seconds = lookback_seconds
        self.feedback_sla_seconds = feedback_sla_seconds
        self.decision_ttl_seconds = decision_ttl_seconds
        self._register_due = redis.register_script(_REGISTER_DUE)
        self._feedback_received = redis.register_script(_FEEDBACK_RECEIVED)
        self._claim_due = redis.register_script(CLAIM_DUE)
        self._settle_due = redis.register_script(SETTLE_DUE)
        self._approvals_since = redis.register_script(_APPROVALS_SINCE)
        self._keep_first_decisions = redis.register_script(_KEEP_FIRST_DECISIONS)

    # --- decisions ---------------------------------------------------------------------------

    async def record_decisions(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Remember each decision unless its request already has one; return the one that holds.

        A block or review decision starts its feedback clock here.
        """
        bodies = [d.model_dump_json(by_alias=True).encode() for d in decisions]
        held = await self.keep_first(decisions, bodies)
        return [
            decision if other is None else Decision.model_validate_json(other)
            for decision, other in zip(decisions, held, strict=True)
        ]

    async def keep_first(
        self, decisions: Sequence[Decision], bodies: Sequence[bytes]
    ) -> list[bytes | None]:
        """Store each decision (``bodies``: its JSON) unless its request already has one.

        Per decision: None when this call stored it, else the body the ledger already held (a
        replayed request, or a second event of one request in the same batch). A block or
        review decision stored here starts its feedback clock. One script for all on a
        standalone Redis; per slot on a cluster.
        """
        if not decisions:
            return []
        keys = [self.layout.decision(d.department, d.request_id) for d in decisions]
        if self.per_slot:
            return await self._keep_first_per_slot(decisions, keys, bodies)
        feedback_keys = [self.layout.feedback(p) for p in ("due", "info", "done", "overdue")]
        args: list[bytes | str | float | int] = [self.decision_ttl_seconds, *bodies]
        for position, decision in enumerate(decisions, start=1):
            if decision.decision != "pass":
                args.extend((position, *self._feedback_due(decision)))
        return await run_script(
            self.redis, self._keep_first_decisions, [*feedback_keys, *keys], args
        )

    async def _keep_first_per_slot(
        self, decisions: Sequence[Decision], keys: list[str], bodies: Sequence[bytes]
    ) -> list[bytes | None]:
        pipe = self.redis.pipeline(transaction=False)
        for key, body in zip(keys, bodies, strict=True):
            pipe.set(key, body, nx=True, ex=self.decision_ttl_seconds)
            pipe.get(key)
        replies = await pipe.execute()
        held: list[bytes | None] = [
            None if won else other for won, other in zip(replies[::2], replies[1::2], strict=True)
        ]
        pipe = self.redis.pipeline(transaction=False)
        for decision, other in zip(decisions, held, strict=True):
            holding = decision if other is None else Decision.model_validate_json(other)
            if holding.decision != "pass":
                # Again for a decision held before: a crash between its SET and this left it
                # owing no feedback (registering twice is a no-op).
                await self._register_due(
                    keys=[self.layout.feedback(p) for p in ("due", "info", "done", "overdue")],
                    args=list(self._feedback_due(holding)),
                    client=pipe,
                )
        await pipe.execute()
        return held

    def _feedback_due(self, decision: Decision) -> tuple[str, float, bytes]:
        """(member, due time, info) of the feedback a block or review decision is owed."""
        subject = next(
            (s for s in decision.subjects if s.decision == decision.decision), decision.subjects[0]
        )
        info = {
            "decision": decision.decision,
            "decided_at": decision.decided_at.isoformat(),
            # a MaskedSubject (claim_overdue reads it back as one)
            "subject": {
                "kind": subject.kind,
                "name": subject.name,
                "role": subject.role,
                "identifier": subject.identifier,
            },
        }
        due = decision.decided_at.timestamp() + self.feedback_sla_seconds
        return _member(decision.department, decision.request_id), due, orjson.dumps(info)

    async def decisions(self, requests: Sequence[tuple[str, str]]) -> list[Decision | None]:
        """The recorded decision of each (department, request_id), or None."""
        return [
            Decision.model_validate_json(raw) if raw else None
            for raw in await self.decision_bodies(requests)
        ]

    async def decision_bodies(self, requests: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The recorded decision of each (department, request_id) as stored (JSON), or None."""
        if not requests:
            return []
        keys = [self.layout.decision(department, request_id) for department, request_id in requests]
        if self.per_slot:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return await pipe.execute()
        return await self.redis.mget(keys)  # keys of many slots: standalone Redis only

    # --- approvals (look-back) ---------------------------------------------------------------

    async def record_approvals(self, approvals: Iterable[tuple[str, Approval]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        horizon = time.time() - self.lookback_seconds
        queued = False
        for identifier, approval in approvals:
            key = self.layout.approvals(identifier)
            member = orjson.dumps(
                {"r": approval.request_id, "d": approval.department, "c": approval.matter_category}
            )
            pipe.zadd(key, {member: approval.approved_at.timestamp()})
            pipe.zremrangebyscore(key, "-inf", horizon)
            pipe.expire(key, int(self.lookback_seconds) + 86400)
            queued = True
        if queued:
            await pipe.execute()

    async def any_approvals(self, identifiers: Sequence[str]) -> bool:
        """Has any of ``identifiers`` remembered approvals? One ``EXISTS`` of all their keys (per
        key on Cluster, pipelined): reading the approvals themselves (a range per key, parsed in
        Python) cost ~10% of a busy worker's CPU on a bulk listing, for nothing when, as usual,
        none of the newly listed had applied for anything."""
        keys = [self.layout.approvals(identifier) for identifier in identifiers]
        if not keys:
            return False
        if self.per_slot:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            return any(await pipe.execute())
        return bool(await self.redis.exists(*keys))

    async def approvals_of(self, identifiers: Sequence[str]) -> dict[str, list[Approval]]:
        """Approvals inside the look-back window, per identifier."""
        if not identifiers:
            return {}
        horizon = time.time() - self.lookback_seconds
        keys = [self.layout.approvals(identifier) for identifier in identifiers]
        if self.per_slot:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrangebyscore(key, horizon, "+inf", withscores=True)
            replies = await pipe.execute()
        else:
            flat = await self._approvals_since(keys=keys, args=[horizon])
            replies = [zip(pairs[::2], map(float, pairs[1::2]), strict=True) for pairs in flat]
        found: dict[str, list[Approval]] = {}
        for identifier, rows in zip(identifiers, replies, strict=True):
            for member, score in rows:
                data = orjson.loads(member)
                found.setdefault(identifier, []).append(
                    Approval(data["r"], data["d"], data["c"], datetime.fromtimestamp(score, UTC))
                )
        return found

    # --- feedback ----------------------------------------------------------------------------

    async def feedback_received(self, items: Iterable[tuple[str, str, datetime]]) -> int:
        """Close the feedback owed by each (department, request_id, at); returns how many were
        overdue."""
        keys = [self.layout.feedback(p) for p in ("due", "info", "done", "overdue")]
        pipe = self.redis.pipeline(transaction=False)
        queued = False
        for department, request_id, at in items:
            await self._feedback_received(
                keys=keys, args=[_member(department, request_id), at.timestamp()], client=pipe
            )
            queued = True
        return sum(await pipe.execute()) if queued else 0

    async def claim_overdue(self, now: float, limit: int = 500) -> OverdueClaim:
        """Lease up to ``limit`` decisions past their SLA; :meth:`settle_overdue` once their
        alerts are published (until then, or if that never happens, they are due again when
        the lease ends)."""
        lease_until = now + CLAIM_LEASE_SECONDS
        reply = await self._claim_due(
            keys=[self.layout.feedback(p) for p in ("due", "info")],
            args=[now, limit, lease_until],
        )
        claim = OverdueClaim(now, lease_until, [m.decode() for m in reply[0::2]], [])
        for member, raw in zip(claim.members, reply[1::2], strict=True):
            if not raw:
                continue  # its info is gone: nothing to say in an alert; settled all the same
            department, _, request_id = member.partition(ROLE_SEPARATOR)
            info = orjson.loads(raw)
            claim.items.append(
                OverdueFeedback(
                    department=department,
                    request_id=request_id,
                    subject=MaskedSubject.model_validate(info["subject"]),
                    decision=info["decision"],
                    decided_at=datetime.fromisoformat(info["decided_at"]),
                )
            )
        return claim

    async def settle_overdue(self, claim: OverdueClaim) -> int:
        """The claimed decisions whose alerts are out join the overdue set; returns how many
        (fewer when feedback arrived meanwhile or a later claim took some over)."""
        if not claim.members:
            return 0
        return int(
            await self._settle_due(
                keys=[self.layout.feedback(p) for p in ("due", "info", "overdue")],
                args=[claim.lease_until, claim.claimed_at, *claim.members],
            )
        )

    async def overdue_count(self, now: float) -> int:
        """Decisions past their SLA without feedback; forgets what is older than a decision's
        retention, so the gauge does not grow forever."""
        forget_before = now - self.decision_ttl_seconds
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self.layout.feedback("overdue"), "-inf", forget_before)
        pipe.zremrangebyscore(self.layout.feedback("done"), "-inf", forget_before)
        pipe.zcard(self.layout.feedback("overdue"))
        *_, count = await pipe.execute()
        return int(count)

    # --- alerts ------------------------------------------------------------------------------

    async def raised(self, alert_ids: Sequence[str]) -> list[bool]:
        """For each alert id: was it raised before? (A replayed stream raises nothing new.)"""
        if not alert_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.exists(self.layout.alerted(alert_id))
        return [bool(r) for r in await pipe.execute()]

    async def mark_raised(self, alert_ids: Sequence[str]) -> None:
        """Marked after publishing: a crash in between repeats an alert (same id), never loses
        one."""
        if not alert_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        ttl = int(self.lookback_seconds) + 86400
        for alert_id in alert_ids:
            pipe.set(self.layout.alerted(alert_id), 1, ex=ttl)
        await pipe.execute()
