"""The optional part of ``StoreContract``: counting and purging objects by key version.

A store that implements :meth:`~strongroom.store.Store.versions_in_use`,
:meth:`~strongroom.store.Store.unreadable` and
:meth:`~strongroom.store.Store.purge_unreadable` is held to these tests; one
that raises ``NotImplementedError`` has them skipped.  They are what lets
the key hierarchy refuse to retire a version still in use, and what keeps
a store listable and re-encryptable after a forced retire or destroy.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from strongroom.errors import KeyUnavailableError, RecordNotFoundError, UsageError
from strongroom.store import Store

__all__ = ["VersionContract"]


def _joined(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


class VersionContract:
    """Mixed into ``StoreContract``; uses its ``store`` fixture and :meth:`blob`."""

    def blob(self, seed: int = 0) -> bytes:
        raise NotImplementedError  # StoreContract.blob

    def counting(self, store: Store) -> dict[int, int]:
        """``store.versions_in_use()``, or skip the test if the store cannot count."""
        try:
            return store.versions_in_use()
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not count objects by key version")

    def test_versions_in_use_counts_objects_per_version(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        assert self.counting(store) == {}
        store.put("a", b"1")
        store.put("b", b"2")
        store.put_blob("c", [self.blob(6)])
        assert self.counting(store) == {1: 3}
        keys.rotate(purpose)
        store.put("b", b"2 again")  # rewritten under version 2
        store.put("d", b"4")
        assert self.counting(store) == {1: 2, 2: 2}
        store.delete("a")
        assert self.counting(store) == {1: 1, 2: 2}
        list(store.reencrypt())
        assert self.counting(store) == {2: 3}

    @pytest.mark.parametrize("how", ["retire", "destroy"])
    def test_forced_retirement_leaves_the_store_usable_and_purgeable(
        self, store: Store, how: str
    ) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("old record", b"under v1")
        store.put_blob("old blob", [self.blob(7)])
        store.put("rewritten", b"under v1 first")
        keys.rotate(purpose)
        store.put("rewritten", b"then under v2")
        store.put("new", b"under v2")
        self.counting(store)
        with pytest.raises(UsageError):  # objects remain under it
            getattr(keys, how)(purpose, 1)
        getattr(keys, how)(purpose, 1, force=True)

        unreadable = list(store.unreadable())
        assert [version for _, version in unreadable] == [1, 1]
        assert len({object_id for object_id, _ in unreadable}) == 2
        for object_id, _ in unreadable:  # opaque: the keys are encrypted under version 1
            assert "old" not in object_id
        assert list(store.keys()) == ["new", "rewritten"]
        progress = list(store.reencrypt())  # skips what it cannot open instead of failing
        assert progress[-1][0] <= progress[-1][1]
        assert list(store.unreadable()) == unreadable
        with pytest.raises(KeyUnavailableError):
            store.get("old record")

        assert store.purge_unreadable() == 2
        assert list(store.unreadable()) == []
        assert store.purge_unreadable() == 0
        assert self.counting(store) == {2: 2}
        with pytest.raises(RecordNotFoundError):
            store.get("old record")
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_blob("old blob"))
        assert list(store.keys()) == ["new", "rewritten"]
        assert store.get("rewritten") == b"then under v2"
        assert store.get("new") == b"under v2"

    def test_a_version_is_retired_once_nothing_is_under_it(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("a", b"1")
        store.put_blob("b", [self.blob(8)])
        keys.rotate(purpose)
        self.counting(store)
        with pytest.raises(UsageError, match=r"\b2\b"):
            keys.retire(purpose, 1)
        list(store.reencrypt())
        keys.retire(purpose, 1)
        keys.destroy(purpose, 1)
        assert store.get("a") == b"1"
        assert _joined(store.get_blob("b")) == self.blob(8)

    def test_nothing_is_unreadable_while_every_version_is_active(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("a", b"1")
        store.put_blob("b", [b"2"])
        keys.rotate(purpose)
        self.counting(store)
        assert list(store.unreadable()) == []
        assert store.purge_unreadable() == 0
        assert store.get("a") == b"1"
        assert _joined(store.get_blob("b")) == b"2"
