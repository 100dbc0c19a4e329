"""Idempotent checks. A ``request_id`` names one decision of one department, kept in Redis so
that every API process gives the same answer to a retry.

The contract (also in the OpenAPI document):

- the same department, ``request_id`` and request (after normalisation: a full-width USCC is
  the same USCC) → the stored decision, byte for byte, for ``idempotency_ttl_seconds``;
- the same ``request_id`` with a different request → 409 ``request_id_conflict``: a caller that
  reuses an id for another approval has a bug, and answering the old decision would hide it;
- two first attempts racing: both decide, Redis ``SET NX`` keeps the first, and both answer it.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from ..domain.models import CheckRequest
from ..index import Layout
from .errors import ApiError

_SEPARATOR = b"\n"


def fingerprint(body: CheckRequest) -> bytes:
    """What makes two requests "the same": the normalised matter and subjects, in order."""
    canonical = body.model_dump_json(exclude={"request_id"}).encode()
    return hashlib.sha256(canonical).hexdigest().encode()


def conflict() -> ApiError:
    return ApiError(
        409,
        "request_id_conflict",
        "this request_id was used for a different request; use a new request_id",
        "request_id",
    )


class Idempotency:
    def __init__(self, redis: Redis, layout: Layout, ttl_seconds: int) -> None:
        self.redis = redis
        self.layout = layout
        self.ttl_seconds = ttl_seconds

    async def replay(self, department: str, request_id: str, print_: bytes) -> bytes | None:
        """The stored decision JSON for this request, None if there is none; 409 on conflict."""
        stored = await self.redis.get(self.layout.request(department, request_id))
        return _decision_of(stored, print_)

    async def remember(
        self, department: str, request_id: str, print_: bytes, decision: bytes
    ) -> bytes:
        """Store the decision unless one raced in first; returns the one that now stands."""
        key = self.layout.request(department, request_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, print_ + _SEPARATOR + decision, nx=True, ex=self.ttl_seconds)
        pipe.get(key)
        stored_now, stored = await pipe.execute()
        if stored_now:
            return decision
        winner = _decision_of(stored, print_)
        return decision if winner is None else winner


def _decision_of(stored: bytes | None, print_: bytes) -> bytes | None:
    if not stored:
        return None
    stored_print, _, decision = stored.partition(_SEPARATOR)
    if stored_print != print_:
        raise conflict()
    return decision
