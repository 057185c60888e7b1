"""``ServerStorageContract``: what every server storage must do, as pytest tests.

Subclass it and say how to open your storage; each call must open the
same, initially empty, database (the contract reopens it to check that
acknowledged writes stay)::

    from strongroom.testing import ServerStorageContract

    class TestMyServerStorage(ServerStorageContract):
        def open_storage(self):
            return MyServerStorage(MyServerStorage.Settings(path=str(self.path)))

Override the ``storage`` fixture instead when opening needs fixtures (a
fresh database per test, say).  The blob tests are in ``_server_blobs``;
both halves use only the accounts ``alice`` and ``bob``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from strongroom.errors import ServerObjectNotFoundError, ServerStorageError, UsageError
from strongroom.server_storage import Applied, Change, ServerStorage
from strongroom.testing._server_blobs import BlobContract

__all__ = ["ServerStorageContract"]

ALICE, BOB = "alice", "bob"


class ServerStorageContract(BlobContract):
    """Records, cursors, conflicts, tombstones, devices and account isolation."""

    def open_storage(self) -> ServerStorage:
        """Open the storage under test; called again to reopen the same database."""
        raise NotImplementedError("override open_storage() or the storage fixture")

    @pytest.fixture
    def storage(self) -> Iterator[ServerStorage]:
        with self.open_storage() as storage:
            yield storage

    # records and cursors

    def test_push_then_pull_round_trip(self, storage: ServerStorage) -> None:
        applied = storage.push(ALICE, [Change("a", b"ct-a"), Change("b", b"ct-b")])
        assert [(one.key, one.conflict) for one in applied] == [("a", False), ("b", False)]
        page = storage.pull(ALICE, after=0)
        assert {(e.key, e.kind, e.value) for e in page.entries} == {
            ("a", "record", b"ct-a"),
            ("b", "record", b"ct-b"),
        }
        assert page.cursor == max(one.seq for one in applied)
        assert not page.more
        assert storage.push(ALICE, []) == []

    def test_seqs_strictly_increase(self, storage: ServerStorage) -> None:
        seqs = [one.seq for n in range(5) for one in storage.push(ALICE, [Change(f"k{n}", b"v")])]
        seqs += [one.seq for one in storage.push(ALICE, [Change("x", b"1"), Change("y", b"2")])]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        assert seqs[0] >= 1

    def test_pull_pages_by_cursor(self, storage: ServerStorage) -> None:
        storage.push(ALICE, [Change(f"k{n:02}", bytes([n])) for n in range(25)])
        seen, cursor, pages = [], 0, 0
        while True:
            page = storage.pull(ALICE, after=cursor, limit=10)
            seen += [entry.seq for entry in page.entries]
            cursor, pages = page.cursor, pages + 1
            if not page.more:
                break
        assert pages == 3
        assert len(seen) == 25
        assert seen == sorted(seen)
        assert storage.pull(ALICE, after=cursor).entries == ()
        assert storage.pull(ALICE, after=cursor).cursor == cursor

    def test_pull_gives_each_key_its_latest_state(self, storage: ServerStorage) -> None:
        storage.push(ALICE, [Change("a", b"1")])
        storage.push(ALICE, [Change("a", b"2")])
        page = storage.pull(ALICE)
        assert [(entry.key, entry.value) for entry in page.entries] == [("a", b"2")]

    def test_acknowledged_writes_survive_reopening(self, storage: ServerStorage) -> None:
        applied = storage.push(ALICE, [Change("kept", b"ciphertext")])
        with self.open_storage() as reopened:
            entry = reopened.pull(ALICE).entries[0]
        assert (entry.key, entry.seq, entry.value) == ("kept", applied[0].seq, b"ciphertext")

    def test_pull_refuses_a_bad_cursor_or_limit(self, storage: ServerStorage) -> None:
        for after, limit in ((-1, 10), (0, 0), (0, ServerStorage.MAX_PAGE + 1)):
            with pytest.raises(UsageError):
                storage.pull(ALICE, after=after, limit=limit)

    def test_a_malformed_push_is_refused_whole(self, storage: ServerStorage) -> None:
        for bad in (
            [Change("a", b"1"), Change("a", b"2")],
            [Change("ok", b"1"), Change("", b"2")],
            [Change("ok", b"1"), Change("b", "text")],  # type: ignore[arg-type]
            [Change("ok", b"1"), Change("b", b"2", base_seq=-1)],
        ):
            with pytest.raises(UsageError):
                storage.push(ALICE, bad)
        assert storage.pull(ALICE).entries == ()

    # conflicts

    def test_a_stale_base_seq_is_a_conflict_and_not_applied(self, storage: ServerStorage) -> None:
        first = storage.push(ALICE, [Change("doc", b"v1")])[0]
        second = storage.push(ALICE, [Change("doc", b"v2", base_seq=first.seq)])[0]
        assert not second.conflict
        assert second.seq > first.seq
        stale = storage.push(ALICE, [Change("doc", b"v3", base_seq=first.seq), Change("o", b"x")])
        assert stale[0] == Applied("doc", second.seq, conflict=True)
        assert not stale[1].conflict  # the rest of the push is applied
        values = {entry.key: entry.value for entry in storage.pull(ALICE).entries}
        assert values == {"doc": b"v2", "o": b"x"}

    def test_base_seq_zero_creates_only_an_absent_key(self, storage: ServerStorage) -> None:
        created = storage.push(ALICE, [Change("new", b"1", base_seq=0)])[0]
        assert not created.conflict
        again = storage.push(ALICE, [Change("new", b"2", base_seq=0)])[0]
        assert again == Applied("new", created.seq, conflict=True)

    def test_without_base_seq_the_last_writer_wins(self, storage: ServerStorage) -> None:
        storage.push(ALICE, [Change("doc", b"from-phone")])
        last = storage.push(ALICE, [Change("doc", b"from-laptop")])[0]
        entry = storage.pull(ALICE).entries[-1]
        assert (entry.key, entry.seq, entry.value) == ("doc", last.seq, b"from-laptop")

    # tombstones

    def test_a_delete_leaves_a_tombstone_for_pullers(self, storage: ServerStorage) -> None:
        written = storage.push(ALICE, [Change("gone", b"1")])[0]
        deleted = storage.push(ALICE, [Change("gone", None, base_seq=written.seq)])[0]
        assert not deleted.conflict
        assert deleted.seq > written.seq
        entry = storage.pull(ALICE, after=written.seq).entries[0]
        assert (entry.key, entry.kind, entry.value) == ("gone", "deleted", None)
        assert entry.seq == deleted.seq
        again = storage.push(ALICE, [Change("gone", b"back", base_seq=deleted.seq)])[0]
        assert not again.conflict

    # accounts

    def test_accounts_do_not_see_each_others_records(self, storage: ServerStorage) -> None:
        storage.push(ALICE, [Change("diary", b"alice's")])
        assert storage.pull(BOB).entries == ()
        storage.push(BOB, [Change("diary", b"bob's")])
        assert [e.value for e in storage.pull(ALICE).entries] == [b"alice's"]
        assert [e.value for e in storage.pull(BOB).entries] == [b"bob's"]

    def test_an_account_cannot_overwrite_or_delete_anothers_key(
        self, storage: ServerStorage
    ) -> None:
        mine = storage.push(ALICE, [Change("doc", b"alice's")])[0]
        storage.push(BOB, [Change("doc", None), Change("doc2", b"x")])
        storage.push(BOB, [Change("doc", b"bob's", base_seq=mine.seq)])
        entries = storage.pull(ALICE).entries
        assert [(e.key, e.seq, e.value) for e in entries] == [("doc", mine.seq, b"alice's")]

    def test_seqs_are_counted_per_account(self, storage: ServerStorage) -> None:
        storage.push(ALICE, [Change(f"a{n}", b"v") for n in range(3)])
        assert storage.push(BOB, [Change("b", b"v")])[0].seq == 1

    # devices

    def test_a_registered_device_is_found_by_key_id(self, storage: ServerStorage) -> None:
        storage.register_device(ALICE, "phone.v1", b"k" * 32)
        device = storage.device("phone.v1")
        assert device is not None
        assert (device.account, device.key, device.active) == (ALICE, b"k" * 32, True)
        assert "k" * 32 not in repr(device)
        assert storage.device("nobody") is None

    def test_a_key_id_of_another_account_is_refused(self, storage: ServerStorage) -> None:
        storage.register_device(ALICE, "phone.v1", b"a" * 32)
        with pytest.raises(ServerStorageError) as refused:
            storage.register_device(BOB, "phone.v1", b"b" * 32)
        assert ALICE not in str(refused.value)
        device = storage.device("phone.v1")
        assert device is not None
        assert (device.account, device.key) == (ALICE, b"a" * 32)

    def test_registering_again_is_a_no_op_and_a_new_key_is_refused(
        self, storage: ServerStorage
    ) -> None:
        storage.register_device(ALICE, "phone.v1", b"a" * 32)
        storage.register_device(ALICE, "phone.v1", b"a" * 32)
        with pytest.raises(ServerStorageError):
            storage.register_device(ALICE, "phone.v1", b"c" * 32)

    def test_devices_lists_every_device_in_key_id_order(self, storage: ServerStorage) -> None:
        storage.register_device(BOB, "tablet.v1", b"t" * 32)
        storage.register_device(ALICE, "phone.v1", b"p" * 32)
        storage.retire_device(ALICE, "phone.v1")
        try:
            listed = storage.devices()
        except NotImplementedError:
            pytest.skip(f"{type(storage).__name__} does not list its devices")
        assert [(d.key_id, d.account, d.active) for d in listed] == [
            ("phone.v1", ALICE, False),
            ("tablet.v1", BOB, True),
        ]

    def test_a_retired_device_stays_retired(self, storage: ServerStorage) -> None:
        storage.register_device(ALICE, "phone.v1", b"a" * 32)
        with pytest.raises(ServerObjectNotFoundError):
            storage.retire_device(BOB, "phone.v1")
        storage.retire_device(ALICE, "phone.v1")
        device = storage.device("phone.v1")
        assert device is not None
        assert not device.active
        with pytest.raises(ServerStorageError):
            storage.register_device(ALICE, "phone.v1", b"a" * 32)
