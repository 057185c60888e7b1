"""The key hierarchy: creation, unlocking, rotation, retirement, destruction, providers."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from accounts import PURPOSES, SUITES, make_keys
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderUnreachableError,
    SecretSourceError,
    UnlockFailedError,
    UsageError,
)
from strongroom.keys import AccountKeys, KeyState
from strongroom.keys._record import KeyRecord, record_mac
from strongroom.secret import Secret
from strongroom.testing import MemoryKeyProvider


@pytest.fixture
def provider() -> MemoryKeyProvider:
    return MemoryKeyProvider()


@pytest.fixture
def events() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def in_use() -> dict[tuple[str, int], int]:
    """Objects under each (purpose, version), as the stores would count them."""
    return {}


@pytest.fixture
def keys(
    tmp_path: Path,
    provider: MemoryKeyProvider,
    events: list[tuple[str, dict[str, Any]]],
    in_use: dict[tuple[str, int], int],
) -> AccountKeys:
    keys = make_keys(
        tmp_path / "alice",
        {"main": provider},
        events,
        count_objects=lambda purpose, version: in_use.get((purpose, version), 0),
    )
    keys.create()
    keys.ensure(*PURPOSES)
    return keys


def record(keys: AccountKeys) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((keys.directory / "keys.json").read_text())
    return data


def master_of(keys: AccountKeys) -> Secret:
    """The unlocked master key, for tests that forge what only its holder could."""
    return keys._session.master_key()


def raw(keys: AccountKeys, purpose: str, version: int | None = None) -> bytes:
    return keys.data_key(purpose, version).material.export_raw(reason="compare in test")


def test_create_writes_only_wrapped_material(keys: AccountKeys) -> None:
    data_key = raw(keys, "store:notes")
    text = (keys.directory / "keys.json").read_text()
    assert data_key.hex() not in text
    assert record(keys)["wraps"]["main"]["use"] == "test"
    assert oct((keys.directory / "keys.json").stat().st_mode & 0o777) == "0o600"


def test_create_refuses_to_overwrite(keys: AccountKeys, provider: MemoryKeyProvider) -> None:
    before = (keys.directory / "keys.json").read_bytes()
    with pytest.raises(UsageError, match="already has keys"):
        make_keys(keys.directory, {"main": provider}).create()
    assert (keys.directory / "keys.json").read_bytes() == before


def test_locked_keys_refuse_and_unlock_restores(keys: AccountKeys) -> None:
    first = raw(keys, "files")
    keys.lock()
    assert not keys.unlocked
    with pytest.raises(KeyLockedError):
        keys.data_key("files")
    assert keys.unlock() == "main"
    assert raw(keys, "files") == first


def test_purposes_never_share_a_key(keys: AccountKeys) -> None:
    assert raw(keys, "files") != raw(keys, "store:notes") != raw(keys, "signing")


def test_rotation_adds_a_primary_and_old_versions_still_open(
    keys: AccountKeys, events: list[tuple[str, dict[str, Any]]]
) -> None:
    first = raw(keys, "files")
    assert keys.rotate("files") == 2
    assert keys.primary_version("files") == 2
    assert raw(keys, "files", 1) == first
    assert raw(keys, "files") != first
    assert (
        "strongroom_key_rotated",
        {"account": "alice", "purpose": "files", "old_version": 1, "new_version": 2},
    ) in events


def test_master_rotation_rewraps_data_keys_only(
    keys: AccountKeys, provider: MemoryKeyProvider
) -> None:
    before = {purpose: raw(keys, purpose) for purpose in ("files", "store:notes")}
    blobs_before = {p: k["versions"]["1"]["wrapped"] for p, k in record(keys)["keysets"].items()}
    assert keys.rotate_master() == 2
    after = record(keys)
    assert after["master_version"] == 2
    assert all(k["versions"]["1"]["master_version"] == 2 for k in after["keysets"].values())
    assert all(
        after["keysets"][p]["versions"]["1"]["wrapped"] != b for p, b in blobs_before.items()
    )
    reopened = make_keys(keys.directory, {"main": provider})
    reopened.unlock()
    assert {purpose: raw(reopened, purpose) for purpose in before} == before


def test_any_of_several_providers_unlocks(tmp_path: Path) -> None:
    os_keyring, recovery = MemoryKeyProvider(), MemoryKeyProvider()
    keys = make_keys(tmp_path / "a", {"os": os_keyring, "recovery": recovery})
    keys.create()
    keys.ensure("files")
    secret = raw(keys, "files")
    keys.lock()
    os_keyring.refuse = True
    assert keys.unlock() == "recovery"
    assert raw(keys, "files") == secret
    keys.lock()
    recovery.refuse = True
    with pytest.raises(UnlockFailedError, match="os: refused; recovery: refused"):
        keys.unlock()


def test_a_provider_holding_another_root_falls_through_to_the_next(tmp_path: Path) -> None:
    """A wrap that does not authenticate under a provider's root is one answer, not the verdict."""
    recovery = MemoryKeyProvider()
    keys = make_keys(tmp_path / "a", {"env": MemoryKeyProvider(), "recovery": recovery})
    keys.create()
    keys.ensure("files")
    secret = raw(keys, "files")
    keys.close()
    wrong_key = MemoryKeyProvider()  # another root: its unwrap raises AuthenticationError
    fresh = make_keys(keys.directory, {"env": wrong_key, "recovery": recovery})
    assert fresh.unlock() == "recovery"
    assert raw(fresh, "files") == secret
    fresh.lock()

    recovery.fail = ProviderUnreachableError("the service does not answer")
    with pytest.raises(KeyUnavailableError) as caught:
        fresh.unlock()
    assert type(caught.value) is KeyUnavailableError  # exit 4: one error for every answer
    assert str(caught.value) == (
        "could not unlock account 'alice': env: its wrap did not open under this provider's "
        "root (another key, or an altered wrap); recovery: the service does not answer"
    )
    assert not fresh.unlocked


def test_every_wrap_failing_to_authenticate_is_an_integrity_error(tmp_path: Path) -> None:
    """No root opens any wrap: the record was altered, or it is not this device's (exit 3)."""
    keys = make_keys(tmp_path / "a", {"os": MemoryKeyProvider(), "recovery": MemoryKeyProvider()})
    keys.create()
    keys.close()
    strangers = make_keys(
        keys.directory, {"os": MemoryKeyProvider(), "recovery": MemoryKeyProvider()}
    )
    with pytest.raises(IntegrityError, match=r"^could not unlock account 'alice': os: its wrap"):
        strangers.unlock()


def test_providers_can_be_added_and_removed_but_not_the_last(tmp_path: Path) -> None:
    first, second = MemoryKeyProvider(), MemoryKeyProvider()
    keys = make_keys(tmp_path / "a", {"first": first, "second": second})
    keys.create(["first"])
    keys.rewrap_for("second")
    assert set(keys.status().providers) == {"first", "second"}
    keys.remove_provider("first")
    assert first.destroyed == ["alice"]
    with pytest.raises(UsageError, match="only provider"):
        keys.remove_provider("second")
    keys.lock()
    assert keys.unlock() == "second"


def test_retire_and_destroy(keys: AccountKeys, events: list[tuple[str, dict[str, Any]]]) -> None:
    raw(keys, "files")
    keys.rotate("files")
    keys.rotate("files")
    with pytest.raises(UsageError, match="is primary"):
        keys.retire("files", 3)
    keys.retire("files", 1)
    with pytest.raises(KeyUnavailableError, match="retired"):
        keys.data_key("files", 1)
    keys.destroy("files", 2)
    entry = record(keys)["keysets"]["files"]["versions"]["2"]
    assert entry["wrapped"] is None
    assert entry["state"] == KeyState.DESTROYED
    with pytest.raises(KeyUnavailableError, match="destroyed"):
        keys.data_key("files", 2)
    assert (
        "strongroom_key_destroyed",
        {"account": "alice", "purpose": "files", "version": 2},
    ) in events


def test_a_wrapped_key_moved_to_another_slot_is_rejected(
    keys: AccountKeys, provider: MemoryKeyProvider
) -> None:
    raw(keys, "files")
    raw(keys, "signing")
    data = record(keys)
    data["keysets"]["files"]["versions"]["1"]["wrapped"] = data["keysets"]["signing"]["versions"][
        "1"
    ]["wrapped"]
    (keys.directory / "keys.json").write_text(json.dumps(data))
    fresh = make_keys(keys.directory, {"main": provider})
    with pytest.raises(IntegrityError, match="altered"):
        fresh.unlock()
    assert not fresh.unlocked
    data["mac"] = base64.b64encode(record_mac(KeyRecord.model_validate(data), master_of(keys)))
    (keys.directory / "keys.json").write_text(json.dumps(data, default=bytes.decode))
    fresh.unlock()  # even with a valid MAC, the wrap itself is bound to its slot
    with pytest.raises(AuthenticationError):
        fresh.data_key("files")


def test_the_master_wrap_is_bound_to_its_account(
    keys: AccountKeys, provider: MemoryKeyProvider
) -> None:
    other = AccountKeys(
        account="mallory",
        directory=keys.directory,
        providers={"main": provider},
        provider_backends={"main": "test"},
        suite_for=SUITES.__getitem__,
        default_suite="aes-256-gcm",
    )
    for _ in range(2):  # the second read must not trust a cached copy
        with pytest.raises(IntegrityError, match="belongs to another account"):
            other.unlock()


def test_a_master_rotation_that_fails_to_save_keeps_the_old_master(
    keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = raw(keys, "files")

    def disk_full(*_args: object) -> None:
        raise OSError("no space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("strongroom.keys._access.save_record", disk_full)
        with pytest.raises(OSError, match="no space"):
            keys.rotate_master()
    assert record(keys)["master_version"] == 1
    keys.rotate("signing")  # sealed under the master key on disk, not the discarded one
    signing = raw(keys, "signing")
    keys.lock()
    keys.unlock()
    assert (raw(keys, "files"), raw(keys, "signing")) == (files, signing)


def test_destroy_all_erases_data_keys_provider_roots_then_wraps(
    keys: AccountKeys, provider: MemoryKeyProvider
) -> None:
    raw(keys, "files")
    assert keys.destroy_all() == []
    data = record(keys)
    assert data["wraps"] == {}
    assert all(
        v["wrapped"] is None for k in data["keysets"].values() for v in k["versions"].values()
    )
    assert provider.destroyed == ["alice"]
    assert not keys.unlocked


class FailingRootProvider(MemoryKeyProvider):
    """Its first destroy fails, as a wipe killed or refused mid-way would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_once = False

    def destroy(self, account: str) -> None:
        if not self.failed_once:
            self.failed_once = True
            raise KeyUnavailableError("keyring refused the deletion")
        super().destroy(account)


def test_an_interrupted_destroy_all_finishes_on_retry(tmp_path: Path) -> None:
    flaky = FailingRootProvider()
    keys = make_keys(tmp_path / "alice", {"main": flaky})
    keys.create()
    keys.ensure("files")
    raw(keys, "files")
    assert keys.destroy_all() == [
        "provider main could not erase its root: keyring refused the deletion"
    ]
    data = record(keys)
    assert all(  # the data keys went first
        v["wrapped"] is None for k in data["keysets"].values() for v in k["versions"].values()
    )
    assert list(data["wraps"]) == ["main"]  # still named, so the retry erases its root
    assert keys.destroy_all() == []
    assert flaky.destroyed == ["alice"]
    assert record(keys)["wraps"] == {}


def test_destroy_all_names_wrapping_providers_it_cannot_reach(
    tmp_path: Path, provider: MemoryKeyProvider
) -> None:
    both = make_keys(tmp_path / "alice", {"main": provider, "spare": MemoryKeyProvider()})
    both.create()
    only_main = make_keys(tmp_path / "alice", {"main": provider})
    left = only_main.destroy_all()
    assert len(left) == 1
    assert left[0].startswith("provider spare (test) is not configured here")
    assert provider.destroyed == ["alice"]
    assert list(record(only_main)["wraps"]) == ["spare"]  # named until someone erases it


def test_first_uses_racing_agree_on_one_version(
    tmp_path: Path, provider: MemoryKeyProvider
) -> None:
    make_keys(tmp_path / "alice", {"main": provider}).create()
    sessions = [make_keys(tmp_path / "alice", {"main": provider}) for _ in range(6)]
    for session in sessions:
        session.unlock()
    start = threading.Barrier(len(sessions))

    def first_use(session: AccountKeys) -> bytes:
        start.wait()
        session.ensure("files")
        return raw(session, "files")

    with ThreadPoolExecutor(len(sessions)) as pool:
        keys_seen = set(pool.map(first_use, sessions))
    assert len(keys_seen) == 1
    assert list(record(sessions[0])["keysets"]["files"]["versions"]) == ["1"]


def test_ensure_creates_only_what_is_missing(tmp_path: Path, provider: MemoryKeyProvider) -> None:
    keys = make_keys(tmp_path / "alice", {"main": provider})
    keys.create()
    assert keys.ensure("files") == ["files"]
    first = raw(keys, "files")
    assert keys.ensure("files", "signing", "signing") == ["signing"]
    assert raw(keys, "files") == first
    assert {k: v["primary"] for k, v in record(keys)["keysets"].items()} == {
        "files": 1,
        "signing": 1,
    }
    keys.lock()
    with pytest.raises(KeyLockedError):
        keys.ensure("store:other")


def test_hooks_carry_no_key_material(
    keys: AccountKeys, events: list[tuple[str, dict[str, Any]]]
) -> None:
    secret = raw(keys, "files")
    keys.rotate("files")
    keys.rotate_master()
    keys.lock()
    keys.unlock()
    names = [name for name, _ in events]
    assert {"strongroom_key_rotated", "strongroom_key_locked", "strongroom_key_unlocked"} <= set(
        names
    )
    flat = repr(events)
    assert secret.hex() not in flat
    assert repr(secret)[2:-1] not in flat


def test_idle_timeout_locks_the_session(tmp_path: Path, provider: MemoryKeyProvider) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    keys = make_keys(tmp_path / "a", {"main": provider}, events, idle_timeout=0.2)
    keys.create()
    keys.ensure("files")
    material = keys.data_key("files").material
    deadline = time.monotonic() + 5
    while keys.unlocked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not keys.unlocked
    assert material.wiped
    assert ("strongroom_key_locked", {"account": "alice", "reason": "idle"}) in events


def test_status_shows_versions_and_no_secrets(keys: AccountKeys) -> None:
    secret = raw(keys, "files")
    keys.rotate("files")
    status = keys.status()
    assert status.master_version == 1
    files = next(k for k in status.keysets if k.purpose == "files")
    assert files.primary == 2
    assert files.versions[1] == ("aes-256-gcm", KeyState.ACTIVE, 1)
    assert secret.hex() not in repr(status)


def test_a_corrupt_record_is_an_integrity_error(
    keys: AccountKeys, provider: MemoryKeyProvider
) -> None:
    (keys.directory / "keys.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="corrupt") as caught:
        make_keys(keys.directory, {"main": provider}).unlock()
    assert caught.value.exit_code == 3


def test_a_version_the_keyset_never_had_is_an_altered_object(keys: AccountKeys) -> None:
    """Only an altered header names such a version: exit 3, not a missing key (exit 4)."""
    keys.ensure("files")
    keys.rotate("files")
    keys.retire("files", 1, force=True)
    lookup = keys.key_lookup("files")
    suite, _key = lookup(2)
    assert suite.name == "aes-256-gcm"
    with pytest.raises(IntegrityError, match="names key version 99, which the keyset never had"):
        lookup(99)
    with pytest.raises(KeyUnavailableError) as caught:
        lookup(1)  # retired: it existed, it just does not decrypt any more
    assert not isinstance(caught.value, IntegrityError)
    keys.lock()
    with pytest.raises(KeyLockedError):
        lookup(99)  # locked first: nothing is read from the record


def test_every_secret_source_unusable_is_a_configuration_error(tmp_path: Path) -> None:
    first, second = MemoryKeyProvider(), MemoryKeyProvider()
    keys = make_keys(tmp_path / "a", {"os": first, "recovery": second})
    keys.create()
    keys.close()
    first.fail = second.fail = None
    unusable = SecretSourceError("file:/x: file is accessible to group or others; chmod 600 it")

    def broken(_blob: bytes, _context: object) -> bytes:
        raise unusable

    first.unwrap = second.unwrap = broken  # type: ignore[method-assign]
    with pytest.raises(SecretSourceError, match=r"os: file:/x: .*; recovery: file:/x"):
        keys.unlock()
