"""The ``sqlcipher`` store against ``StoreContract``, with whole-file key versions.

SQLCipher keys the whole file with one key version, so the three contract
tests written for per-object versions (writes after a rotation land under
the new version at once; counts split across versions; a forced retire
leaving newer objects readable) are replaced here by what a whole-file
store must do instead, and say so.  Raw forms are page-level in SQLCipher:
a record has no stored form of its own to swap; the attacks on pages are
in ``test_sqlcipher_store_tamper``.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from msgspec import ValidationError
from sqlcipher_support import CHUNK, open_sqlcipher_store

from strongroom.errors import KeyUnavailableError, RecordNotFoundError, UsageError
from strongroom.store import Store, StoreBinding
from strongroom.testing import StoreContract
from strongroom_plugins.sqlcipher.store import SqlcipherStore, SqlcipherStoreSettings


def joined(chunks: object) -> bytes:
    return b"".join(chunks)  # type: ignore[arg-type]


class TestSqlcipherStoreContract(StoreContract):
    blob_size = 5 * CHUNK + 123
    raw_forms_unavailable = (
        "SQLCipher encrypts and authenticates whole pages (HMAC over page and page "
        "number): a record has no stored form of its own; pages are attacked in "
        "test_sqlcipher_store_tamper"
    )

    def open_store(self, binding: StoreBinding) -> Store:
        return open_sqlcipher_store(binding)

    def counting(self, store: Store) -> dict[int, int]:
        return store.versions_in_use()  # never skipped: the store counts

    # whole-file replacements for the per-object version tests

    def test_rotation_keeps_old_data_and_writes_under_the_new_version(self, store: Store) -> None:
        """Whole file: writes stay under v1 until the re-key, which moves everything to v2."""
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("old", b"written under v1")
        store.put_blob("old blob", [self.blob(3)])
        assert keys.rotate(purpose) == 2
        store.put("new", b"written after the rotation")
        assert store.versions_in_use() == {1: 3}
        with pytest.raises(UsageError):  # the file is still under v1
            keys.destroy(purpose, 1)
        list(store.reencrypt())
        keys.destroy(purpose, 1)  # not forced: nothing is under v1 now
        assert store.get("old") == b"written under v1"
        assert store.get("new") == b"written after the rotation"
        assert joined(store.get_blob("old blob")) == self.blob(3)

    def test_versions_in_use_counts_objects_per_version(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        assert self.counting(store) == {}
        store.put("a", b"1")
        store.put("b", b"2")
        store.put_blob("c", [self.blob(6)])
        assert self.counting(store) == {1: 3}
        keys.rotate(purpose)
        store.put("b", b"2 again")
        store.put("d", b"4")
        assert self.counting(store) == {1: 4}
        store.delete("a")
        assert self.counting(store) == {1: 3}
        list(store.reencrypt())
        assert self.counting(store) == {2: 3}
        for key in ("b", "c", "d"):
            store.delete(key)
        assert self.counting(store) == {2: 1}, "an empty database is still under its version"

    @pytest.mark.parametrize("how", ["retire", "destroy"])
    def test_forced_retirement_leaves_the_store_usable_and_purgeable(
        self, store: Store, how: str
    ) -> None:
        """Whole file: forcing out the file's version shreds everything; purging starts afresh."""
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("old record", b"under v1")
        store.put_blob("old blob", [self.blob(7)])
        keys.rotate(purpose)
        store.put("written after", b"still under v1")
        with pytest.raises(UsageError):
            getattr(keys, how)(purpose, 1)
        getattr(keys, how)(purpose, 1, force=True)

        assert list(store.unreadable()) == [("database", 1)]
        for read in (lambda: store.get("old record"), lambda: list(store.keys())):
            with pytest.raises(KeyUnavailableError):
                read()
        assert store.purge_unreadable() == 1
        assert list(store.unreadable()) == []
        assert store.purge_unreadable() == 0
        assert self.counting(store) == {}
        with pytest.raises(RecordNotFoundError):
            store.get("old record")
        store.put("new", b"under v2")
        assert self.counting(store) == {2: 1}
        assert list(store.keys()) == ["new"]


def test_registered_as_the_sqlcipher_store() -> None:
    [entry_point] = [ep for ep in entry_points(group="strongroom.stores") if ep.name == "sqlcipher"]
    assert entry_point.load() is SqlcipherStore
    assert SqlcipherStore.Settings is SqlcipherStoreSettings


@pytest.mark.parametrize(
    "settings",
    [
        {"chunk_size": 4095},
        {"chunk_size": (16 << 20) + 1},
        {"busy_timeout": 0},
        {"busy_timeout": -1.0},
    ],
)
def test_settings_are_validated(settings: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        SqlcipherStoreSettings(**settings)  # type: ignore[arg-type]
