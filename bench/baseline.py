"""The naive baseline of bench/api.py: one FastAPI endpoint, one redis-py round trip a request.

It parses the same body with a pydantic model, looks the first subject's identifier up with one
``HGET`` and answers a small JSON decision. Served by the same uvicorn setup as the real API,
it is what "just put the list in Redis behind FastAPI" would give.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from redis.asyncio import Redis

redis = Redis.from_url(os.environ.get("SANCTIONGATE_REDIS_URL", "redis://127.0.0.1:6379/0"))
prefix = os.environ.get("SANCTIONGATE_INDEX_PREFIX", "sg")
app = FastAPI()


class Subject(BaseModel):
    kind: str
    name: str
    uscc: str | None = None
    id_number: str | None = None
    role: str | None = None


class Matter(BaseModel):
    category: str


class CheckRequest(BaseModel):
    matter: Matter
    subjects: list[Subject]


@app.post("/v1/checks")
async def check(body: CheckRequest) -> dict:
    subject = body.subjects[0]
    identifier = subject.uscc or subject.id_number or subject.name
    refs = await redis.hget(f"{prefix}:baseline", identifier)
    return {"decision": "block" if refs else "pass", "subjects": len(body.subjects)}
