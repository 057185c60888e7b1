"""The key record is authenticated, refuses rollback, and never grows keysets on its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts import PURPOSES, make_keys
from strongroom.errors import IntegrityError, KeyUnavailableError, UsageError
from strongroom.key_provider import WrapContext
from strongroom.keys import AccountKeys
from strongroom.keys._record import KeyRecord, check_mac
from strongroom.secret import Secret
from strongroom.testing import MemoryKeyProvider

Edit = Callable[[dict[str, Any]], None]


def _versions(data: dict[str, Any], purpose: str) -> dict[str, Any]:
    versions: dict[str, Any] = data["keysets"][purpose]["versions"]
    return versions


#: Every security-relevant field of the record, edited as an attacker would.
EDITS: dict[str, Edit] = {
    "retired version made active": lambda d: _versions(d, "files")["1"].update(state="active"),
    "primary moved to an old version": lambda d: d["keysets"]["files"].update(primary=1),
    "suite changed": lambda d: _versions(d, "files")["2"].update(suite="chacha20-poly1305"),
    "floor lowered": lambda d: d["keysets"]["store:notes"].update(floor=0),
    "generation changed": lambda d: d.update(generation=d["generation"] + 7),
    "master version changed": lambda d: d.update(master_version=9),
    "keyset removed": lambda d: d["keysets"].pop("signing"),
    "keyset added": lambda d: d["keysets"].update({"store:x": d["keysets"]["signing"]}),
    "version removed": lambda d: _versions(d, "files").pop("1"),
    "timestamp changed": lambda d: _versions(d, "files")["2"].update(created="2000-01-01"),
    "MAC removed": lambda d: d.update(mac=None),
    "MAC of another record": lambda d: d.update(mac=d["mac"][::-1]),
    "MAC without base64 padding": lambda d: d.update(mac=d["mac"].rstrip("=")),
    "MAC with a URL-safe base64 character": lambda d: d.update(mac="_" + d["mac"][1:]),
    "wrapped key with a space in its base64": lambda d: _versions(d, "files")["2"].update(
        wrapped=" " + _versions(d, "files")["2"]["wrapped"]
    ),
}


@pytest.fixture
def provider() -> MemoryKeyProvider:
    return MemoryKeyProvider()


@pytest.fixture
def keys(tmp_path: Path, provider: MemoryKeyProvider) -> AccountKeys:
    """An account whose ``files`` keyset has a retired v1 and a primary v2, floor 2 on notes."""
    keys = make_keys(tmp_path / "alice", {"main": provider}, count_objects=lambda _p, _v: 0)
    keys.create()
    keys.ensure(*PURPOSES)
    keys.rotate("files")
    keys.retire("files", 1)
    keys.rotate("store:notes")
    keys.raise_floor("store:notes", 2)
    return keys


def _path(keys: AccountKeys) -> Path:
    return keys.directory / "keys.json"


def _edit(keys: AccountKeys, edit: Edit) -> bytes:
    data = json.loads(_path(keys).read_text())
    edit(data)
    _path(keys).write_text(json.dumps(data))
    return _path(keys).read_bytes()


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_an_edited_record_is_refused_on_unlock_and_left_as_it_is(
    keys: AccountKeys, provider: MemoryKeyProvider, edit: Edit
) -> None:
    edited = _edit(keys, edit)
    fresh = make_keys(keys.directory, {"main": provider})
    with pytest.raises(IntegrityError) as caught:  # altered, corrupt, or a wrap that fails
        fresh.unlock()
    assert caught.value.exit_code == 3
    assert not fresh.unlocked
    assert _path(keys).read_bytes() == edited


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_a_record_edited_under_an_unlocked_session_is_refused_before_use(
    keys: AccountKeys, edit: Edit
) -> None:
    edited = _edit(keys, edit)
    with pytest.raises(IntegrityError):
        keys.data_key("files")
    with pytest.raises(IntegrityError):
        keys.rotate("store:notes")
    assert _path(keys).read_bytes() == edited


def test_the_floor_lives_in_the_authenticated_record(keys: AccountKeys) -> None:
    assert keys.floor("store:notes") == 2
    keys.raise_floor("store:notes", 1)  # never lowered
    assert keys.floor("store:notes") == 2
    with pytest.raises(UsageError, match="no key version 5"):
        keys.raise_floor("store:notes", 5)
    assert keys.floor("files") == 0


def test_a_restored_older_record_is_refused_where_a_provider_keeps_the_generation(
    keys: AccountKeys, provider: MemoryKeyProvider, tmp_path: Path
) -> None:
    backup = tmp_path / "keys.json.bak"
    shutil.copy(_path(keys), backup)
    keys.destroy("files", 1)
    shutil.copy(backup, _path(keys))  # would bring files v1 back
    fresh = make_keys(keys.directory, {"main": provider})
    with pytest.raises(IntegrityError, match="rolled back") as caught:
        fresh.unlock()
    assert "accept-rollback" in str(caught.value)
    assert caught.value.exit_code == 3
    assert _path(keys).read_bytes() == backup.read_bytes()

    generation = fresh.accept_rollback()  # an operator restoring a backup on purpose
    assert generation > json.loads(backup.read_text())["generation"]
    again = make_keys(keys.directory, {"main": provider})
    again.unlock()
    assert again.status().keysets[0].versions[1][1] == "retired"


def test_a_provider_that_keeps_no_generation_cannot_see_a_rollback(tmp_path: Path) -> None:
    """The documented limit: the passphrase provider keeps no state."""

    class Stateless(MemoryKeyProvider):
        def record_generation(self, account: str, generation: int) -> None:
            pass

        def recorded_generation(self, account: str) -> int | None:
            return None

    stateless = Stateless()
    account = make_keys(tmp_path / "bob", {"main": stateless})
    account.create()
    account.ensure("files")
    backup = _path(account).read_bytes()
    account.rotate("files")
    _path(account).write_bytes(backup)
    fresh = make_keys(account.directory, {"main": stateless})
    fresh.unlock()  # accepted: nothing kept the newer generation
    assert fresh.primary_version("files") == 1


def test_missing_keysets_are_never_created_on_use(keys: AccountKeys) -> None:
    before = _path(keys).read_bytes()
    for use in (
        lambda: keys.data_key("store:other"),
        lambda: keys.data_key("store:other:names", 1),
        lambda: keys.rotate("store:other"),
        lambda: keys.floor("store:other"),
    ):
        with pytest.raises(KeyUnavailableError, match="no store:other"):
            use()
    assert _path(keys).read_bytes() == before


@pytest.mark.parametrize("purpose", ["store:NOPE/../x", "store:", "../files", "master", "x"])
def test_malformed_purposes_are_refused_and_write_nothing(keys: AccountKeys, purpose: str) -> None:
    before = _path(keys).read_bytes()
    for use in (
        lambda: keys.rotate(purpose),
        lambda: keys.ensure(purpose),
        lambda: keys.data_key(purpose),
        lambda: keys.retire(purpose, 1),
    ):
        with pytest.raises(UsageError, match="not a keyset purpose"):
            use()
    assert _path(keys).read_bytes() == before


def test_a_names_keyset_is_never_rotated_by_the_library(keys: AccountKeys) -> None:
    before = _path(keys).read_bytes()
    with pytest.raises(UsageError, match="never rotated"):
        keys.rotate("store:notes:names")
    with pytest.raises(UsageError, match="primary"):
        keys.destroy("store:notes:names", 1, force=True)
    assert _path(keys).read_bytes() == before


def test_retire_and_destroy_refuse_versions_still_in_use(
    tmp_path: Path, provider: MemoryKeyProvider
) -> None:
    counts: dict[tuple[str, int], int | None] = {("store:notes", 1): 3, ("files", 1): None}
    keys = make_keys(
        tmp_path / "alice", {"main": provider}, count_objects=lambda p, v: counts.get((p, v), 0)
    )
    keys.create()
    keys.ensure(*PURPOSES)
    keys.rotate("store:notes")
    keys.rotate("files")
    before = _path(keys).read_bytes()
    with pytest.raises(UsageError, match="3 object"):
        keys.destroy("store:notes", 1)
    with pytest.raises(UsageError, match="3 object"):
        keys.retire("store:notes", 1)
    with pytest.raises(UsageError, match="cannot count"):
        keys.destroy("files", 1)
    assert _path(keys).read_bytes() == before
    keys.destroy("files", 1, force=True)
    counts[("store:notes", 1)] = 0
    keys.retire("store:notes", 1)
    status = {k.purpose: k.versions for k in keys.status().keysets}
    assert status["files"][1][1] == "destroyed"
    assert status["store:notes"][1][1] == "retired"


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text("{not json"),
        lambda p: p.write_text(json.dumps({"format": "strongroom-keys"})),
        lambda p: (p.unlink(), p.mkdir()),
    ],
    ids=["garbage", "wrong shape", "a directory"],
)
def test_wipe_cannot_be_blocked_by_a_damaged_record(
    keys: AccountKeys, provider: MemoryKeyProvider, damage: Callable[[Path], object]
) -> None:
    wrapped = provider.wrap(b"\0" * 32, WrapContext("alice", "master", 1))
    damage(_path(keys))
    left = make_keys(keys.directory, {"main": provider}).destroy_all()
    assert any("erasing the roots of every configured provider" in line for line in left)
    with pytest.raises(KeyUnavailableError):  # the configured provider's root is gone
        provider.unwrap(wrapped, WrapContext("alice", "master", 1))


VECTOR = json.loads((Path(__file__).parents[1] / "vectors" / "key-record.json").read_text())


def _independent_mac(record: dict[str, Any], master: bytes) -> tuple[bytes, bytes]:
    """RFC 5869 HKDF-SHA256 and HMAC-SHA256 over the canonical JSON, from docs/formats.md alone."""
    prk = hmac.new(b"\0" * 32, master, hashlib.sha256).digest()
    mac_key = hmac.new(prk, b"strongroom/v1/key-record-mac\x01", hashlib.sha256).digest()
    body = {k: v for k, v in record.items() if k not in ("mac", "wraps")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")
    return mac_key, hmac.new(
        mac_key, b"strongroom/key-record/v1\0" + canonical, hashlib.sha256
    ).digest()


def test_the_record_mac_matches_its_known_answer_vector(tmp_path: Path) -> None:
    master = bytes.fromhex(VECTOR["master_key"])
    mac_key, mac = _independent_mac(VECTOR["record"], master)
    assert mac_key.hex() == VECTOR["mac_key"]
    assert base64.b64encode(mac).decode() == VECTOR["record"]["mac"]
    record = KeyRecord.model_validate(VECTOR["record"])
    check_mac(record, Secret(bytearray(master), label="vector master"), tmp_path)
    record.keysets["files"].primary = 1
    with pytest.raises(IntegrityError, match="altered"):
        check_mac(record, Secret(bytearray(master), label="vector master"), tmp_path)


@pytest.mark.parametrize(
    ("rotate_master", "message"),
    [(False, "went back from generation"), (True, "older than provider 'main' last saw")],
    ids=["same master key", "older master key"],
)
def test_a_record_put_back_under_an_open_session_is_refused(
    keys: AccountKeys, tmp_path: Path, rotate_master: bool, message: str
) -> None:
    """The session remembers the newest generation it trusted; a re-unlock asks the providers."""
    backup = tmp_path / "keys.json.bak"
    shutil.copy(_path(keys), backup)
    keys.destroy("files", 1)
    if rotate_master:
        keys.rotate_master()
    shutil.copy(backup, _path(keys))
    with pytest.raises(IntegrityError, match=message):
        keys.data_key("files", 1)
    with pytest.raises(IntegrityError, match=message):
        keys.rotate("files")
    assert _path(keys).read_bytes() == backup.read_bytes()
