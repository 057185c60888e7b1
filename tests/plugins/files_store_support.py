"""What the ``files`` store's tests share: opening a store, and where it keeps a key."""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.formats import peek_key_version
from strongroom.keys import AccountKeys
from strongroom.store import Store, StoreBinding
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

CHUNK = 4096

#: The in-memory provider's KEK, fixed so that a child process can unlock the same account.
KEK = bytes(range(32))


def open_files_store(binding: StoreBinding, chunk_size: int = CHUNK) -> FilesStore:
    return FilesStore(FilesStoreSettings(chunk_size=chunk_size), binding=binding)


def bind(keys: AccountKeys, name: str = "notes") -> StoreBinding:
    """Store ``name``'s directory and keys, its keysets made as ``strongroom init`` makes them."""
    directory = keys.directory / "stores" / name
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    binding = StoreBinding(keys.account, name, directory, keys)
    keys.ensure(binding.purpose, binding.names_purpose)
    return binding


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def path_of(store: FilesStore, key: str, kind: str = "records") -> Path:
    """Where the store keeps ``key`` (a private detail its tests are entitled to)."""
    name = store._name(key.encode())
    return store.binding.directory / kind / name[:2] / name


def blob_paths(store: FilesStore, key: str) -> tuple[Path, Path]:
    blob = path_of(store, key, "blobs")
    return blob, blob.with_name(blob.name + ".name")


def header_version(path: Path) -> int:
    return peek_key_version(path.read_bytes()[:16])


def temporaries(root: Path) -> set[Path]:
    """The temporary files a writer left in ``root`` (never a finished file)."""
    return {
        path
        for path in root.rglob("*.tmp")
        if path.is_file() and path.name.startswith(".") and os.sep not in path.name
    }


class RawRecordFiles:
    """``StoreContract``'s raw-form hooks for a files store: a record's file, read and written."""

    #: The floor in the key record: a copy older than a completed pass is "rolled back".
    refuses_rollback_after_reencrypt = True

    def raw_record(self, store: Store, key: str) -> bytes:
        assert isinstance(store, FilesStore)
        return path_of(store, key).read_bytes()

    def put_raw(self, store: Store, key: str, raw: bytes) -> None:
        assert isinstance(store, FilesStore)
        path_of(store, key).write_bytes(raw)
