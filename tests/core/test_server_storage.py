"""The ``server_storage`` slot: its place in the stack, its shared checks, and quiet reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom import Strongroom
from strongroom._loading import SLOTS_BY_TABLE, load_backend, registrations
from strongroom.config import parse_config
from strongroom.errors import ConfigError, UsageError
from strongroom.server_storage import BlobManifest, Change, Device, Entry, ServerStorage


def test_the_slot_is_one_backend_from_its_own_group() -> None:
    slot = SLOTS_BY_TABLE["server_storage"]
    assert (slot.group, slot.plural) == ("strongroom.server_stores", False)
    assert slot.interface_class() is ServerStorage
    assert {reg.name for reg in registrations(slot.group)} >= {"sqlite", "postgresql"}
    backend, registration = load_backend(slot, "postgresql")
    assert issubclass(backend, ServerStorage)
    assert registration.install_hint() == "pip install 'strongroom[postgresql]'"


def test_the_stack_builds_the_configured_server_storage(tmp_path: Path) -> None:
    path = tmp_path / "server.sqlite3"
    table = {"use": "sqlite", "path": str(path)}
    stack = Strongroom(parse_config({"server_storage": table}, source="t.toml"))
    try:
        storage = stack.server_storage
        assert storage is stack.server_storage
        assert storage.push("alice", [Change("a", b"1")])[0].seq == 1
    finally:
        stack.close()
    assert path.exists()


def test_settings_are_checked_when_the_stack_resolves_them() -> None:
    config = parse_config({"server_storage": {"use": "sqlite", "pth": "x"}}, source="t.toml")
    with pytest.raises(ConfigError, match=r"\[server_storage\] key 'pth': unknown key"):
        Strongroom(config).resolve("server_storage")


def test_no_value_or_key_shows_in_a_repr() -> None:
    texts = [
        repr(Change("k", b"ciphertext-bytes")),
        repr(Device("phone.v1", "alice", b"mac-key-bytes-16")),
        repr(Entry("k", 1, "record", b"ciphertext-bytes")),
        repr(BlobManifest(1, b"manifest-bytes", (b"h" * 32,))),
    ]
    for text in texts:
        assert "bytes'" not in text
        assert "h" * 32 not in text
    assert repr(Change("k", None)) == "Change('k', delete, base_seq=None)"


@pytest.mark.parametrize("name", ["", "x" * 1025, "\u00e9" * 513, "a\0b", "\ud800", 7])
def test_malformed_keys_are_refused(name: object) -> None:
    with pytest.raises(UsageError):
        ServerStorage.check_changes([Change(name, b"v")])  # type: ignore[arg-type]


def test_a_push_names_each_key_once_with_a_seq_of_zero_or_more() -> None:
    with pytest.raises(UsageError):
        ServerStorage.check_changes([Change("a", b"1"), Change("a", None)])
    for seq in (-1, True, 1.5):
        with pytest.raises(UsageError):
            ServerStorage.check_changes([Change("a", b"1", base_seq=seq)])  # type: ignore[arg-type]
    ServerStorage.check_changes([Change("a", b"1", base_seq=0), Change("b", None)])


def test_chunk_hashes_are_sha256_sized_and_bounded() -> None:
    assert ServerStorage.check_hashes([b"a" * 32, b"b" * 32]) == b"a" * 32 + b"b" * 32
    for hashes in ([], [b"a" * 31], ["a" * 32], [b"a" * 32] * (ServerStorage.MAX_CHUNKS + 1)):
        with pytest.raises(UsageError):
            ServerStorage.check_hashes(hashes)  # type: ignore[arg-type]


def test_a_backend_missing_a_method_is_refused_at_load() -> None:
    class Partial(ServerStorage):
        def push(self, account: str, changes: object) -> list[object]:  # type: ignore[override]
            return []

    problems = Partial.declaration_problems()
    assert problems
    assert "pull" in problems[0]
