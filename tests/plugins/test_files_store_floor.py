"""The re-encryption floor lives in the key record: no file of the store can lower it."""

from __future__ import annotations

from pathlib import Path

import pytest
from files_store_support import (
    bind,
    blob_paths,
    files_under,
    header_version,
    open_files_store,
    path_of,
)

from strongroom.errors import IntegrityError
from strongroom.keys import AccountKeys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores.files import FilesStore

RECORDS = {"balance": (b"100", b"0"), "owner": (b"alice", b"bob")}
BLOB = (b"old blob " * 2000, b"new blob " * 2000)
NEW = {**{key: values[1] for key, values in RECORDS.items()}, "scan": BLOB[1]}


def directory_state(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in files_under(root)}


def put_back(root: Path, state: dict[Path, bytes]) -> None:
    """Make the directory hold exactly ``state``: what an attacker with the files can do."""
    for path in files_under(root):
        if path not in state:
            path.unlink()
    for path, data in state.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read(store: FilesStore, key: str) -> bytes:
    return b"".join(store.get_blob(key)) if key == "scan" else store.get(key)


def refused(store: FilesStore, key: str) -> bool:
    """Whether reading ``key`` is refused as rolled back."""
    with pytest.raises(IntegrityError) as info:
        read(store, key)
    return "rolled back" in str(info.value)


def assert_never_opened(store: FilesStore, state: dict[Path, bytes], old: Path) -> None:
    """With ``state`` on disk, ``old`` (a file from before the pass) is never opened."""
    root = store.binding.directory
    where = old.relative_to(root)
    for key in [*RECORDS, "scan"]:
        blob, key_file = blob_paths(store, key)
        if old in (path_of(store, key), blob):
            assert refused(store, key), where
        elif any(path in state for path in (path_of(store, key), blob)):
            assert read(store, key) == NEW[key], where
        if old == path_of(store, key) or (old == key_file and blob in state):
            with pytest.raises(IntegrityError, match="rolled back"):
                list(store.keys())


def test_no_file_in_the_store_can_bring_back_a_ciphertext_older_than_the_floor(
    store: FilesStore,
) -> None:
    keys, purpose, root = store.binding.keys, store.binding.purpose, store.binding.directory
    for key, (old, _) in RECORDS.items():
        store.put(key, old)
    store.put_blob("scan", [BLOB[0]])
    before = directory_state(root)  # every object under version 1
    keys.rotate(purpose)
    for key, (_, new) in RECORDS.items():
        store.put(key, new)
    store.put_blob("scan", [BLOB[1]])
    assert list(store.reencrypt())[-1] == (3, 3)
    assert keys.floor(purpose) == 2
    after = directory_state(root)
    assert not [path for path in after if path.name == "floor"], "no floor file any more"

    # Each old file put back alone, every other file of the store kept, or deleted.
    for path, data in before.items():
        for others in (after, {}):
            state = {**others, path: data}
            put_back(root, state)
            assert_never_opened(store, state, path)
    # The whole directory as it was before the pass, lock file and all.
    put_back(root, before)
    assert all(refused(store, key) for key in [*RECORDS, "scan"])
    with pytest.raises(IntegrityError, match="rolled back"):
        list(store.keys())
    put_back(root, after)
    assert {key: read(store, key) for key in NEW} == NEW


def test_a_lazy_reseal_never_launders_a_copy_older_than_the_floor(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record read before a pass and put back after it is not re-sealed under the new key."""
    keys, purpose = account_keys, store.binding.purpose
    store.put("balance", b"100")
    path = path_of(store, "balance")
    old = path.read_bytes()
    keys.rotate(purpose)
    write_temp = _disk.write_temp

    def meanwhile(target: Path, data: bytes) -> Path:
        temp = write_temp(target, data)  # the re-seal of the value just read, under version 2
        monkeypatch.setattr(_disk, "write_temp", write_temp)
        with open_files_store(bind(account_keys)) as other:
            other.put("balance", b"0")
            list(other.reencrypt())  # floor 2
        path.write_bytes(old)  # the version 1 copy put back before the swap
        return temp

    monkeypatch.setattr(_disk, "write_temp", meanwhile)
    assert store.get("balance") == b"100"  # read before the pass: it was current then
    assert keys.floor(purpose) == 2
    assert path.read_bytes() == old, "the old value was re-sealed under version 2"
    assert header_version(path) == 1
    assert refused(store, "balance")


def test_a_completed_pass_raises_the_floor_in_the_key_record(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("k", b"v")
    assert keys.floor(purpose) == 0
    keys.rotate(purpose)
    progress = store.reencrypt()
    next(progress)
    assert keys.floor(purpose) == 0, "not before the pass completes"
    list(progress)
    assert keys.floor(purpose) == 2
    with open_files_store(store.binding) as reopened:  # nothing cached: read from the record
        reopened.binding.keys.rotate(purpose)
        list(reopened.reencrypt())
    assert keys.floor(purpose) == 3
