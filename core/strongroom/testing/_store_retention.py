"""The optional part of ``StoreContract``: purging by age, for a configured retention.

A store that implements :meth:`~strongroom.store.Store.purge_expired` is
held to these tests; one that raises ``NotImplementedError`` has them
skipped (and a config cannot set ``retention`` on it).  Times are real:
objects are written, the clock moves on a little, a cutoff is taken, and
more are written, so no store has to expose how it records write times.
"""

from __future__ import annotations

import time

import pytest

from strongroom.errors import RecordNotFoundError
from strongroom.store import Store

__all__ = ["RetentionContract"]

#: Long enough for any file system's or clock's time resolution to tell before from after.
_STEP = 0.05


def _cutoff() -> float:
    """A time strictly after everything written so far and before anything written next."""
    time.sleep(_STEP)
    now = time.time()
    time.sleep(_STEP)
    return now


class RetentionContract:
    """Mixed into ``StoreContract``; uses its ``store`` fixture and :meth:`blob`."""

    def blob(self, seed: int = 0) -> bytes:
        raise NotImplementedError  # StoreContract.blob

    def purging(self, store: Store, written_before: float) -> int:
        """``store.purge_expired(written_before)``, or skip if the store cannot purge by age."""
        try:
            return store.purge_expired(written_before)
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not purge by age")

    def test_purge_expired_deletes_only_what_was_written_before(self, store: Store) -> None:
        store.put("old", b"1")
        store.put_many([("old-batch", b"2")])
        store.put_blob("old-blob", [self.blob(1)])
        store.put("rewritten", b"v1")
        cutoff = _cutoff()
        store.put("new", b"3")
        store.put_blob("new-blob", [self.blob(2)])
        store.put("rewritten", b"v2")  # a write since the cutoff makes it new
        assert self.purging(store, cutoff) == 3
        for gone in ("old", "old-batch"):
            with pytest.raises(RecordNotFoundError):
                store.get(gone)
        with pytest.raises(RecordNotFoundError):
            b"".join(store.get_blob("old-blob"))
        assert list(store.keys()) == ["new", "new-blob", "rewritten"]
        assert store.get("rewritten") == b"v2"
        assert b"".join(store.get_blob("new-blob")) == self.blob(2)
        assert self.purging(store, cutoff) == 0  # nothing left that old

    def test_purge_expired_with_nothing_due_changes_nothing(self, store: Store) -> None:
        assert self.purging(store, time.time()) == 0  # an empty store
        store.put("a", b"1")
        store.put_blob("b", [self.blob(3)])
        assert self.purging(store, time.time() - 3600) == 0
        assert list(store.keys()) == ["a", "b"]
        assert store.get("a") == b"1"

    def test_reencryption_does_not_make_data_new(self, store: Store) -> None:
        """Re-keying rewrites objects, but a retention counts from the application's write."""
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("read", b"1")
        store.put("passed", b"2")
        store.put_blob("blob", [self.blob(4)])
        cutoff = _cutoff()
        keys.rotate(purpose)
        assert store.get("read") == b"1"  # a store may re-seal a stale record as it reads it
        list(store.reencrypt())
        store.put("new", b"3")
        assert self.purging(store, cutoff) == 3
        assert list(store.keys()) == ["new"]
