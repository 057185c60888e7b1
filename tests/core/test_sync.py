"""Two devices of one account keeping a store in step through the sync server.

Each device is its own stack (own data directory, own signing key) on
pinned https to ``tests/sync_server.py``; they share the account's sync
key by an explicit export and import.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    PinMismatchError,
    TransportError,
    UsageError,
)
from strongroom.server_storage import Change
from strongroom.store import Store
from strongroom.sync import Syncer
from strongroom.transport import SyncRequest, SyncResponse
from sync_server import ReferenceServer, make_device
from tls_servers import Pki, make_pki, serve_asgi

MARKER = b"plaintext-marker-51c9"
CHUNK = 4096


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Pair:
    server: ReferenceServer
    phone: Syncer
    laptop: Syncer
    root: Path

    @property
    def notes(self) -> tuple[Store, Store]:
        return self.phone.store, self.laptop.store


@pytest.fixture
def pair(tmp_path: Path, pki: Pki) -> Iterator[Pair]:
    server = ReferenceServer(tmp_path / "server.db")
    with serve_asgi(server.app(), pki.server) as url:
        phone_stack = make_device(tmp_path / "phone", url, pki, server, "phone-1")
        laptop_stack = make_device(tmp_path / "laptop", url, pki, server, "laptop-1")
        with phone_stack, laptop_stack:
            phone = Syncer(phone_stack, "notes", chunk_size=CHUNK)
            laptop = Syncer(laptop_stack, "notes", chunk_size=CHUNK)
            phone.create_key()
            laptop.import_key(phone.export_key())
            yield Pair(server, phone, laptop, tmp_path)
            phone.close()
            laptop.close()
    server.storage.close()


def contents(store: Store) -> dict[str, bytes]:
    return {
        key: b"".join(store.get_any(key))
        for key in store.keys()  # noqa: SIM118 - a Store, not a dict
        if not key.startswith("strongroom.")
    }


def test_two_devices_converge_through_the_server(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put("a", b"first")
    phone.put("b", b"second")
    first = pair.phone.sync()
    assert sorted(first.pushed) == ["a", "b"]
    assert (first.conflicts, first.parked, first.offline) == ([], [], False)
    pulled = pair.laptop.sync()
    assert sorted(pulled.pulled) == ["a", "b"]
    assert contents(laptop) == {"a": b"first", "b": b"second"}
    laptop.put("b", b"second, edited")
    laptop.delete("a")
    laptop.put("c", b"third")
    assert sorted(pair.laptop.sync().pushed) == ["a", "b", "c"]
    assert sorted(pair.phone.sync().pulled) == ["a", "b", "c"]
    assert contents(phone) == contents(laptop) == {"b": b"second, edited", "c": b"third"}
    # nothing changed: nothing moves
    quiet = pair.phone.sync()
    assert (quiet.pushed, quiet.pulled) == ([], [])
    assert pair.server.runs["push"] == 2


def test_a_conflicting_write_keeps_the_servers_version_and_a_conflict_copy(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put("k", b"base")
    pair.phone.sync()
    pair.laptop.sync()
    phone.put("k", b"from the phone")
    laptop.put("k", b"from the laptop")
    assert pair.phone.sync().pushed == ["k"]  # first to the server wins the key
    report = pair.laptop.sync()
    assert report.conflicts == ["k"]
    assert laptop.get("k") == b"from the phone"  # the server's version, on both devices
    assert pair.laptop.conflicts() == ["k"]
    assert pair.laptop.conflict_value("k") == b"from the laptop"  # the losing write, kept
    assert pair.phone.conflicts() == []
    # the application resolves: it writes what it wants and drops the copy
    laptop.put("k", b"merged")
    pair.laptop.resolve("k")
    assert pair.laptop.conflicts() == []
    assert pair.laptop.sync().pushed == ["k"]
    pair.phone.sync()
    assert phone.get("k") == laptop.get("k") == b"merged"
    # keep_local restores the losing write as the value to push
    phone.put("k", b"phone again")
    laptop.put("k", b"laptop again")
    pair.phone.sync()
    pair.laptop.sync()
    pair.laptop.resolve("k", keep_local=True)
    pair.laptop.sync()
    pair.phone.sync()
    assert phone.get("k") == laptop.get("k") == b"laptop again"


def test_a_delete_that_loses_is_kept_as_a_deleted_conflict_copy(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put("k", b"v1")
    pair.phone.sync()
    pair.laptop.sync()
    phone.put("k", b"v2")
    laptop.delete("k")
    pair.phone.sync()
    assert pair.laptop.sync().conflicts == ["k"]
    assert laptop.get("k") == b"v2"
    assert pair.laptop.conflict_value("k") is None


def test_the_server_holds_only_ciphertext_under_opaque_ids(pair: Pair) -> None:
    phone, _ = pair.notes
    phone.put("secret-" + MARKER.decode(), MARKER * 3)
    phone.put_blob("blob-" + MARKER.decode(), [MARKER * 2000])
    pair.phone.sync()
    pair.laptop.sync()
    pair.server.storage.close()
    with sqlite3.connect(pair.root / "server.db") as db:
        dump = "\n".join(db.iterdump()).encode()
    assert b"strongroom_objects" in dump
    assert MARKER not in dump
    assert MARKER.hex().encode() not in dump.lower()
    for device in ("phone", "laptop"):  # the sync state and staging on the devices, too
        for path in (pair.root / device).rglob("*"):
            if path.is_file():
                assert MARKER not in path.read_bytes(), path


def test_a_record_moved_to_another_key_on_the_server_is_refused(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put("x", b"value of x")
    phone.put("y", b"value of y")
    pair.phone.sync()
    pair.laptop.sync()
    page = pair.server.storage.pull("alice")
    by_key = {entry.key: entry.value for entry in page.entries}
    ids = sorted(by_key)
    pair.server.storage.push("alice", [Change(ids[0], by_key[ids[1]])])  # the server swaps
    with pytest.raises(AuthenticationError):
        pair.laptop.sync()
    assert contents(laptop) == {"x": b"value of x", "y": b"value of y"}


def test_a_blob_upload_and_download_resume_without_resending_verified_chunks(
    pair: Pair,
) -> None:
    phone, laptop = pair.notes
    blob = os.urandom(10 * CHUNK + 123)  # header + 11 chunks: 12 transfer chunks
    phone.put_blob("photo", [blob[:5000], blob[5000:]])
    sent = 0

    def dropping_after_four_chunks(request: SyncRequest) -> SyncResponse:
        nonlocal sent
        if request.method == "PUT":
            sent += 1
            if sent > 4:
                raise TransportError("the network went away mid-upload")
        return pair.phone.stack.send(request)

    pair.phone.send = dropping_after_four_chunks
    interrupted = pair.phone.sync()
    assert interrupted.offline
    assert interrupted.chunks_sent == 4
    assert sorted(pair.server.chunk_puts) == [0, 1, 2, 3]  # four in flight: any order
    pair.phone.send = pair.phone.stack.send
    resumed = pair.phone.sync()
    assert resumed.pushed == ["photo"]
    assert resumed.chunks_sent == 8
    assert sorted(pair.server.chunk_puts) == list(range(12))  # none sent twice
    fetched = 0

    def dropping_after_five_chunks(request: SyncRequest) -> SyncResponse:
        nonlocal fetched
        if "/chunks/" in request.path:
            fetched += 1
            if fetched > 5:
                raise TransportError("the network went away mid-download")
        return pair.laptop.stack.send(request)

    pair.laptop.send = dropping_after_five_chunks
    first = pair.laptop.sync()
    assert first.offline
    assert first.chunks_fetched == 5
    assert "photo" not in set(laptop.keys())
    pair.laptop.send = pair.laptop.stack.send
    second = pair.laptop.sync()
    assert second.pulled == ["photo"]
    assert second.chunks_fetched == 7
    assert sorted(pair.server.chunk_gets) == list(range(12))
    assert b"".join(laptop.get_blob("photo")) == blob
    assert not list((pair.root / "laptop").rglob("*.part"))
    assert pair.phone.sync().chunks_fetched == 0  # its own upload is not fetched back
    assert not list((pair.root / "phone").rglob("up-*"))  # staging cleaned up


def test_a_chunk_that_does_not_match_its_manifest_is_refused(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put_blob("photo", [os.urandom(3 * CHUNK)])
    pair.phone.sync()

    def corrupting(request: SyncRequest) -> SyncResponse:
        response = pair.laptop.stack.send(request)
        if request.path.endswith("/chunks/1"):
            return SyncResponse(200, b"\0" + response.body[1:], response.headers)
        return response

    pair.laptop.send = corrupting
    with pytest.raises(IntegrityError, match="chunk 1"):
        pair.laptop.sync()
    assert "photo" not in set(laptop.keys())


def test_the_sync_key_moves_only_by_explicit_export_and_import(
    pair: Pair, tmp_path: Path, pki: Pki
) -> None:
    exported = pair.phone.export_key()
    assert exported.startswith("strongroom-sync-key:v1:")
    pair.laptop.import_key(exported)  # the same key again: a no-op
    with pytest.raises(UsageError, match="already"):
        pair.phone.create_key()
    with pytest.raises(UsageError, match="not an exported sync key"):
        pair.laptop.import_key("strongroom-sync-key:v1:nonsense")
    stranger = make_device(tmp_path / "tablet", "https://127.0.0.1:1", pki, pair.server, "tab-1")
    with stranger:
        syncer = Syncer(stranger, "notes")
        with pytest.raises(UsageError, match="no sync key"):
            syncer.sync()
        syncer.create_key()
        with pytest.raises(UsageError, match="another sync key"):
            syncer.import_key(exported)


def test_sync_while_offline_keeps_local_changes_queued(pair: Pair) -> None:
    phone, laptop = pair.notes
    phone.put("n", b"written offline")

    def offline(request: SyncRequest) -> SyncResponse:
        raise TransportError("no route to host")

    pair.phone.send = offline
    report = pair.phone.sync()
    assert report.offline
    assert report.queued == 1
    pair.phone.send = pair.phone.stack.send
    assert pair.phone.sync().pushed == ["n"]
    pair.laptop.sync()
    assert laptop.get("n") == b"written offline"
    # a write queued offline against an older seq meets the rule when it goes
    laptop.put("n", b"the laptop's edit")
    pair.laptop.sync()
    phone.put("n", b"the phone's offline edit")
    pair.phone.send = offline
    assert pair.phone.sync().queued == 1
    pair.phone.send = pair.phone.stack.send
    late = pair.phone.sync()
    assert late.conflicts == ["n"]
    assert phone.get("n") == b"the laptop's edit"
    assert pair.phone.conflict_value("n") == b"the phone's offline edit"


def test_a_pin_mismatch_stops_the_sync_rather_than_passing_for_offline(pair: Pair) -> None:
    phone, _ = pair.notes
    phone.put("p", b"value")

    def intercepted(request: SyncRequest) -> SyncResponse:
        raise PinMismatchError("127.0.0.1: the server's key is not pinned")

    pair.phone.send = intercepted
    with pytest.raises(PinMismatchError):
        pair.phone.sync()  # not taken for "offline": the channel is not trusted
    pair.phone.send = pair.phone.stack.send
    assert pair.phone.sync().pushed == ["p"]
