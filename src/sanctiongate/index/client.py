"""The Redis client of API processes and workers: three per-command costs of redis-py's asyncio
client removed.

- Packing: redis-py's synchronous client packs commands with hiredis (C) when installed; its
  asyncio connection packs in Python, which for a read of thousands of keys (a batch check)
  cost more than Redis's own work. The bytes are the same (str as UTF-8, numbers as their
  repr); as in the synchronous client, a value hiredis cannot pack is a DataError.
- The write timeout: with ``socket_timeout`` set, redis-py guards each write with
  ``asyncio.wait_for``, which on Python 3.11 wraps the write in a new Task (an extra task and
  event-loop turn for every command). ``asyncio.timeout`` guards it the same way without one
  (it is what ``wait_for`` itself became in Python 3.12), and only when there is something to
  wait for: a write the socket took whole (a check's few hundred bytes) cannot time out, and
  arming and cancelling a timer for it cost 3% of a check's CPU.
- A script call (``EVALSHA``) through ``Redis.execute_command`` or a pipeline passes through
  redis-py's per-command machinery (command stack, response callbacks, operation-duration
  and error hooks) at about twice the CPU of the round trip itself. The check's hot paths
  (its index read, the ledger write) call :func:`run_script`: the packed command on a pooled
  connection, under the connection's own retry policy, with NOSCRIPT answered as redis-py's
  ``Script`` answers it (load, send again).
- A pipeline that calls scripts first asks ``SCRIPT EXISTS`` for them, a round trip of its own
  before every read of the index. Here a script is asked about once per client; should Redis
  have lost it since (a restart, ``SCRIPT FLUSH``), the pipeline gets NOSCRIPT, the scripts are
  loaded and the pipeline runs again. Only pipelines of nothing but script calls skip the
  question: a NOSCRIPT then means none of them ran, so nothing runs twice; a pipeline with
  other commands asks first, as in redis-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, DataError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError


class LeanCommands(AbstractConnection):
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

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        # redis-py's own, with asyncio.timeout in place of asyncio.wait_for.
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            self._writer.writelines(command)
            if self._writer.transport.get_write_buffer_size():
                # The socket took only part of it: wait for the rest, as long as the timeout.
                async with asyncio.timeout(self.socket_timeout):
                    await self._writer.drain()
            else:  # all written: drain() only checks that the connection is still open
                await self._writer.drain()
        except TimeoutError:  # asyncio's, the builtin: an OSError, so caught first
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)
            err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else e.args[:2]
            raise ConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            # As redis-py: a half-sent command leaves the connection unusable.
            await self.disconnect(nowait=True)
            raise


class LeanRedis(Redis):
    """``Redis`` (``LeanRedis.from_url(...)``) with the connections and pipelines above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        base = pool.connection_class
        if not issubclass(base, LeanCommands):
            pool.connection_class = type(f"Lean{base.__name__}", (LeanCommands, base), {})
        self.loaded_scripts: set[str] = set()  # SHAs that Redis was seen to hold

    async def run_script(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        """``await script(keys=keys, args=args)``, leaner (module docstring)."""
        pool = self.connection_pool
        conn = await pool.get_connection()
        try:
            return await conn.retry.call_with_retry(
                lambda: self._script_on(conn, script, keys, args), lambda _: conn.disconnect()
            )
        finally:
            await pool.release(conn)

    async def _script_on(
        self,
        conn: AbstractConnection,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
    ) -> Any:
        for attempt in (1, 2):
            await conn.send_packed_command(
                conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
            )
            try:
                return await conn.read_response()
            except NoScriptError:
                if attempt == 2:
                    raise
                # As redis-py's Script: Redis lost it (a restart, SCRIPT FLUSH); none of it ran.
                script.sha = await self.script_load(script.script)
        raise AssertionError("unreachable")

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = LeanPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.loaded_scripts = self.loaded_scripts
        return pipe


class LeanPipeline(Pipeline):
    loaded_scripts: set[str]

    async def load_scripts(self) -> None:
        known = all(script.sha in self.loaded_scripts for script in self.scripts)
        if not (known and self._only_scripts(self.command_stack)):
            await super().load_scripts()  # redis-py's SCRIPT EXISTS (and SCRIPT LOAD)
            self.loaded_scripts.update(script.sha for script in self.scripts)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, scripts = list(self.command_stack), set(self.scripts)
        try:
            return await super().execute(raise_on_error)
        except NoScriptError:
            if not (stack and self._only_scripts(stack)):
                raise
            self.loaded_scripts.clear()
            self.command_stack, self.scripts = stack, scripts  # execute() reset them
            return await super().execute(raise_on_error)

    @staticmethod
    def _only_scripts(stack: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> bool:
        """Nothing but script calls: a NOSCRIPT reply means none of them ran."""
        return all(args[0] == "EVALSHA" for args, _ in stack)


async def run_script(
    redis: Redis | RedisCluster, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    """``await script(keys=keys, args=args)``: on a :class:`LeanRedis` without redis-py's
    per-command machinery (module docstring), on any other client as redis-py does it."""
    if isinstance(redis, LeanRedis):
        return await redis.run_script(script, keys, args)
    return await script(keys=keys, args=args)
