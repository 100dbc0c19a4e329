"""Commands packed by hiredis (C) instead of redis-py's Python packer, on the asyncio client.

redis-py's synchronous client already packs with hiredis when it is installed; its asyncio
connection packs in Python, which for a read of thousands of keys (a batch check) cost more
than Redis's own work. The bytes are the same (str as UTF-8, numbers as their repr); as in the
synchronous client, a value hiredis cannot pack is a DataError.
"""

from __future__ import annotations

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError


class HiredisPacking(AbstractConnection):
    """Mixed in before the pool's own connection class (TCP, TLS or Unix socket)."""

    def pack_command(self, *args):  # type: ignore[no-untyped-def]
        command = args[0]
        # As redis-py: a command name given with its sub-command ("CONFIG GET") is split.
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


def pack_with_hiredis(redis: Redis) -> Redis:
    """Make ``redis``'s pool open connections that pack with hiredis; returns ``redis``."""
    pool = redis.connection_pool
    base = pool.connection_class
    if not issubclass(base, HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
    return redis
