"""API keys: each maps to a department and the matter categories it may check.

Stored hashed (SHA-256 of a 256-bit random secret: no salt or slow hash is needed for
high-entropy secrets) in a JSON file, not in Redis, so that flushing Redis never locks the
service halls out. API processes re-read the file when it changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TOKEN_PREFIX = "sg"
SCOPE = re.compile(r"^([a-z][a-z0-9_]*|\*)$")  # a matter category, or * for all


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    department: str
    scopes: list[str]
    secret_sha256: str
    created_at: str
    revoked_at: str | None = None
    label: str = ""

    def may_check(self, category: str) -> bool:
        return "*" in self.scopes or category in self.scopes


@dataclass
class KeyStore:
    path: Path
    _keys: dict[str, ApiKey] = field(default_factory=dict)
    _seen: tuple[int, int, int] | None = None
    # Tokens already proven to belong to an active key, so a check pays one dict lookup instead
    # of parsing and hashing the token. Emptied whenever the file is read again (a revoked key
    # stops working at once); it holds only valid tokens, so at most one per key.
    _proven: dict[str, ApiKey] = field(default_factory=dict)

    def load(self) -> None:
        """Re-read the file when it changed (a save replaces it: new inode, new mtime)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._keys, self._seen = {}, None
            self._proven.clear()
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        self._keys = {k["key_id"]: ApiKey(**k) for k in raw.get("keys", [])}
        self._seen = seen
        self._proven.clear()

    def all(self) -> list[ApiKey]:
        self.load()
        return list(self._keys.values())

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a bearer token belongs to, or None."""
        self.load()
        proven = self._proven.get(token)
        if proven is not None:
            return proven
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        key = self._keys.get(key_id)
        if prefix != TOKEN_PREFIX or key is None or key.revoked_at is not None:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, key.secret_sha256):
            return None
        self._proven[token] = key
        return key

    def create(self, department: str, scopes: list[str], label: str = "") -> tuple[ApiKey, str]:
        department = department.strip()
        if not department:
            raise ValueError("a key belongs to a department: give its name")
        if not scopes or not all(SCOPE.match(s) for s in scopes):
            raise ValueError(f"scopes are matter categories (a-z, 0-9, _) or *: got {scopes!r}")
        self.load()
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        key = ApiKey(
            key_id=key_id,
            department=department,
            scopes=scopes,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            created_at=datetime.now(UTC).isoformat(),
            label=label,
        )
        self._keys[key_id] = key
        self._save()
        return key, f"{TOKEN_PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        self.load()
        key = self._keys.get(key_id)
        if key is None:
            return False
        self._keys[key_id] = ApiKey(**{**asdict(key), "revoked_at": datetime.now(UTC).isoformat()})
        self._save()
        return True

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(k) for k in self._keys.values()]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)  # atomic: a reader never sees half a file
        self._seen = None
        self._proven.clear()


@dataclass
class TurnKeyStore(KeyStore):
    """The API's: looks at the file at most once per turn of the event loop, not per request.

    The ``stat`` was 2% of a check's CPU at peak; the checks of one turn (a wave of requests
    read together) now share one. A key revoked (or created) is seen by the first request
    read after the file changed, as before: only requests read in the same turn as the
    change, which raced it anyway, may be judged by the file as it was. Outside an event
    loop (the CLI) it looks every time.
    """

    _looked: bool = False

    def load(self) -> None:
        if self._looked:
            return
        super().load()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._looked = True
        loop.call_soon(self._turn_over)

    def _turn_over(self) -> None:
        self._looked = False
