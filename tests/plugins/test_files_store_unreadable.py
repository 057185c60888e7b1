"""After a forced retire or destroy: the store keeps working, and its shredded objects can go."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from files_store_support import (
    KEK,
    bind,
    blob_paths,
    files_under,
    header_version,
    open_files_store,
    path_of,
)

from strongroom.errors import KeyUnavailableError, RecordNotFoundError
from strongroom.keys import AccountKeys
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores.files import FilesStore


@pytest.fixture
def other_process(account_keys: AccountKeys) -> Iterator[AccountKeys]:
    """The same account's keys as another process holds them: its own session."""
    keys = make_account_keys(account_keys.directory, provider=MemoryKeyProvider(kek=KEK))
    keys.unlock()
    yield keys
    keys.close()


def names(store: FilesStore, *keys: str) -> set[str]:
    return {path_of(store, key).name for key in keys}


@pytest.mark.parametrize("how", ["retire", "destroy"])
def test_listing_and_reencrypt_keep_working_after_a_forced_retirement(
    store: FilesStore, how: str
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("old 1", b"v1")
    store.put("old 2", b"v1")
    store.put_blob("old blob", [b"v1" * 5000])
    keys.rotate(purpose)
    store.put("new", b"v2")
    store.put_blob("new blob", [b"v2" * 5000])
    assert store.versions_in_use() == {1: 3, 2: 2}
    getattr(keys, how)(purpose, 1, force=True)

    assert list(store.keys()) == ["new", "new blob"]
    assert list(store.keys("old")) == []
    progress = list(store.reencrypt())
    assert progress[-1] == (2, 5), "the three shredded objects are skipped, not done"
    assert keys.floor(purpose) == 2, "they can never be opened: the floor rises past them"
    assert store.versions_in_use() == {1: 3, 2: 2}
    unreadable = sorted(store.unreadable())
    ids = {f"record:{name}" for name in names(store, "old 1", "old 2")}
    ids.add(f"blob:{path_of(store, 'old blob').name}")
    assert unreadable == sorted((object_id, 1) for object_id in ids)
    with pytest.raises(KeyUnavailableError, match=f"version 1, which is {how}"):
        store.get("old 1")

    assert store.purge_unreadable() == 3
    assert store.versions_in_use() == {2: 2}
    assert len(files_under(store.binding.directory / "blobs")) == 2  # the new blob and its key
    for key in ("old 1", "old 2", "old blob"):
        with pytest.raises(RecordNotFoundError):
            b"".join(store.get_any(key))
    assert b"".join(store.get_any("new blob")) == b"v2" * 5000


def test_a_half_reencrypted_blob_is_one_unreadable_object(store: FilesStore) -> None:
    """Re-encryption upgrades a blob's key file, then the blob: killed between, they differ."""
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put_blob("b", [b"blob" * 3000])
    blob, key_file = blob_paths(store, "b")
    old_blob = blob.read_bytes()
    keys.rotate(purpose)
    list(store.reencrypt())
    blob.write_bytes(old_blob)
    assert (header_version(key_file), header_version(blob)) == (2, 1)
    assert store.versions_in_use() == {1: 1, 2: 1}
    keys.destroy(purpose, 1, force=True)
    assert list(store.keys()) == []
    assert list(store.unreadable()) == [(f"blob:{blob.name}", 1)]
    assert store.purge_unreadable() == 1
    assert not blob.exists()
    assert not key_file.exists(), "never a key file left without its blob"


def test_objects_are_counted_from_their_headers_while_locked(store: FilesStore) -> None:
    keys = store.binding.keys
    store.put("a", b"1")
    store.put_blob("b", [b"2"])
    keys.lock()
    assert store.versions_in_use() == {1: 2}
    assert list(store.unreadable()) == []
    keys.unlock()


def retiring_meanwhile(monkeypatch: pytest.MonkeyPatch, keys: AccountKeys, purpose: str) -> None:
    """Rotate and retire (forced) the version a write was sealed under, before it lands."""
    write_temp = _disk.write_temp

    def meanwhile(target: Path, data: bytes) -> Path:
        temp = write_temp(target, data)
        monkeypatch.setattr(_disk, "write_temp", write_temp)
        keys.rotate(purpose)
        keys.retire(purpose, 1, force=True)
        return temp

    monkeypatch.setattr(_disk, "write_temp", meanwhile)


@pytest.mark.parametrize("blob", [False, True])
def test_a_write_is_redone_when_another_process_retires_its_version(
    store: FilesStore, other_process: AccountKeys, monkeypatch: pytest.MonkeyPatch, blob: bool
) -> None:
    """A write sealed under a version retired before it lands is sealed again, not shredded."""
    value = b"written across a retirement" * 300
    retiring_meanwhile(monkeypatch, other_process, store.binding.purpose)
    if blob:
        store.put_blob("k", [value])
        assert b"".join(store.get_blob("k")) == value
        assert {header_version(path) for path in blob_paths(store, "k")} == {2}
    else:
        store.put("k", value)
        assert store.get("k") == value
        assert header_version(path_of(store, "k")) == 2
    assert list(store.unreadable()) == []


@pytest.mark.parametrize("blob", [False, True])
def test_a_write_sealed_before_a_rotation_lands_under_the_new_primary(
    store: FilesStore, other_process: AccountKeys, monkeypatch: pytest.MonkeyPatch, blob: bool
) -> None:
    """Once a rotated-out version is counted empty, no write in flight can add to it."""
    purpose = store.binding.purpose
    store.put("before", b"under v1")
    write_temp = _disk.write_temp
    counted: list[dict[int, int]] = []

    def rotate_and_count_meanwhile(target: Path, data: bytes) -> Path:
        temp = write_temp(target, data)  # sealed under version 1
        monkeypatch.setattr(_disk, "write_temp", write_temp)
        other_process.rotate(purpose)
        store.delete("before")
        counted.append(store.versions_in_use())  # what retiring version 1 would count now
        return temp

    monkeypatch.setattr(_disk, "write_temp", rotate_and_count_meanwhile)
    if blob:
        store.put_blob("k", [b"in flight" * 1000])
    else:
        store.put("k", b"in flight")
    assert counted == [{}]
    assert store.versions_in_use() == {2: 1}, "the write landed under the version counted empty"
    assert b"".join(store.get_any("k")) == (b"in flight" * 1000 if blob else b"in flight")


def test_a_blob_whose_version_this_process_retired_midway_is_refused(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its plaintext is consumed and its key wiped: the write fails and installs nothing."""
    store.put_blob("k", [b"before"])
    before = {path: path.read_bytes() for path in blob_paths(store, "k")}
    retiring_meanwhile(monkeypatch, store.binding.keys, store.binding.purpose)
    with pytest.raises(KeyUnavailableError):  # its key is gone from this process
        store.put_blob("k", [b"after" * 1000])
    assert {path: path.read_bytes() for path in blob_paths(store, "k")} == before
    assert not [p for p in files_under(store.binding.directory) if p.name.endswith(".tmp")]


def test_purge_keeps_an_object_rewritten_since_it_was_found(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("rewritten", b"v1")
    store.put("left", b"v1")
    keys.rotate(purpose)
    keys.destroy(purpose, 1, force=True)
    locked = store._installer.locked

    @contextlib.contextmanager
    def rewrite_first() -> Iterator[None]:
        monkeypatch.setattr(store._installer, "locked", locked)
        with open_files_store(bind(account_keys)) as other:
            other.put("rewritten", b"v2")  # between purge's scan and its removals
        with locked():
            yield

    monkeypatch.setattr(store._installer, "locked", rewrite_first)
    assert store.purge_unreadable() == 1
    assert store.get("rewritten") == b"v2"
    assert list(store.keys()) == ["rewritten"]
    assert list(store.unreadable()) == []


def test_copies_put_back_below_the_floor_are_named_and_purged(store: FilesStore) -> None:
    """A partial restore after a completed pass: refused for good, so it can be cleared."""
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("kept", b"1")
    store.put("old", b"2")
    store.put_blob("blob", [b"3"])
    saved = {path: path.read_bytes() for path in files_under(store.binding.directory / "records")}
    saved |= {path: path.read_bytes() for path in blob_paths(store, "blob")}
    keys.rotate(purpose)
    list(store.reencrypt())
    assert keys.floor(purpose) == 2
    for path, data in saved.items():  # put back: every object under version 1 again
        path.write_bytes(data)
    found = sorted(store.unreadable())
    assert [version for _, version in found] == [1, 1, 1]
    assert {object_id.split(":")[0] for object_id, _ in found} == {"record", "blob"}
    assert store.versions_in_use() == {1: 3}
    assert store.purge_unreadable() == 3
    assert list(store.unreadable()) == []
    assert list(store.keys()) == []
