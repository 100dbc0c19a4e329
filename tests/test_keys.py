"""API keys: created, listed and revoked from the CLI; stored hashed; scoped by category."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sanctiongate.keys import KeyStore, TurnKeyStore


def cli(keys_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SANCTIONGATE_KEYS_FILE": str(keys_file)}
    return subprocess.run(
        [sys.executable, "-m", "sanctiongate.cli", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_creates_lists_and_revokes_keys_stored_hashed(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys" / "api-keys.json"
    created = cli(
        keys_file, "create", "--department", "市财政局", "--scope", "bidding, fiscal_funding"
    )
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    assert shown["department"] == "市财政局"
    assert shown["scopes"] == ["bidding", "fiscal_funding"]
    token = shown["token"]

    stored = keys_file.read_text(encoding="utf-8")
    secret = token.split("_", 2)[2]
    assert secret not in stored and token not in stored, "only the hash is stored"
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600

    everything = cli(keys_file, "create", "--department", "发改委", "--label", "dev")
    assert json.loads(everything.stdout)["scopes"] == ["*"]

    listing = cli(keys_file, "list").stdout.splitlines()
    assert len(listing) == 2
    assert any(
        shown["key_id"] in line and "bidding,fiscal_funding" in line and "active" in line
        for line in listing
    )
    assert token not in "\n".join(listing)

    key = KeyStore(keys_file).authenticate(token)
    assert key is not None and key.may_check("bidding") and not key.may_check("land_transfer")

    revoked = cli(keys_file, "revoke", shown["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert any(
        shown["key_id"] in line and "revoked" in line
        for line in cli(keys_file, "list").stdout.splitlines()
    )
    assert KeyStore(keys_file).authenticate(token) is None

    assert cli(keys_file, "revoke", "no-such-key").returncode == 1


def test_authenticate_refuses_anything_but_the_exact_token(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, token = store.create("税务局", ["*"])
    assert store.authenticate(token) == key
    assert key.may_check("any_category")
    prefix, key_id, secret = token.split("_", 2)
    for forged in (
        "",
        secret,
        f"{prefix}_{key_id}_",
        f"{prefix}_{key_id}_{secret}x",
        f"{prefix}_{key_id}_{secret[:-1]}",
        f"xx_{key_id}_{secret}",
        f"{prefix}_000000000000_{secret}",
        token.upper(),
    ):
        assert store.authenticate(forged) is None, forged


def test_a_running_process_sees_keys_created_and_revoked_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    serving = KeyStore(path)
    assert serving.all() == []
    key, token = KeyStore(path).create("海关", ["customs"])
    assert serving.authenticate(token) == key
    KeyStore(path).revoke(key.key_id)
    assert serving.authenticate(token) is None


@pytest.mark.parametrize(
    ("department", "scopes"),
    [
        ("", ["*"]),
        ("  ", ["bidding"]),
        ("税务局", []),
        ("税务局", ["Bidding"]),
        ("税务局", ["a b"]),
    ],
)
def test_create_refuses_empty_departments_and_bad_scopes(
    tmp_path: Path, department: str, scopes: list[str]
) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ValueError):
        store.create(department, scopes)
    assert store.all() == []


def test_a_proven_token_is_forgotten_when_the_key_file_changes(tmp_path: Path) -> None:
    """The token cache must not outlive the file: another key's revocation, a key's own, or the
    file's removal all take effect on the next call."""
    path = tmp_path / "keys.json"
    serving = KeyStore(path)
    key, token = KeyStore(path).create("海关", ["customs"])
    other, other_token = KeyStore(path).create("税务局", ["tax"])
    assert serving.authenticate(token) == key and serving.authenticate(other_token) == other
    KeyStore(path).revoke(other.key_id)
    assert serving.authenticate(other_token) is None
    assert serving.authenticate(token) == key
    path.unlink()
    assert serving.authenticate(token) is None


async def test_the_api_store_looks_at_the_file_once_a_turn_and_again_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    serving = TurnKeyStore(path)
    key, token = KeyStore(path).create("海关", ["customs"])
    assert serving.authenticate(token) == key
    KeyStore(path).revoke(key.key_id)
    assert serving.authenticate(token) == key  # the same turn: the file as it was read
    await asyncio.sleep(0)
    assert serving.authenticate(token) is None  # the next turn sees the revocation


def test_the_api_store_outside_an_event_loop_looks_every_time(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    serving = TurnKeyStore(path)
    key, token = KeyStore(path).create("海关", ["customs"])
    assert serving.authenticate(token) == key
    KeyStore(path).revoke(key.key_id)
    assert serving.authenticate(token) is None
