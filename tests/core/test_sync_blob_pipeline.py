"""Blob chunks moved several at a time: bounded, in order where it matters, resumable.

``BlobMover`` against an in-process stand-in for the upload and download
endpoints, whose requests a test can stall, reorder or fail with events
(no timings); then the reference server end to end, and both server
stores taking one upload's chunks at once and out of order.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from postgres import running_postgres
from strongroom._sync_blobs import BlobMover, Transferred, _offset
from strongroom._sync_codec import Payload, SyncCodec
from strongroom._sync_state import Upload
from strongroom.errors import IntegrityError, TransportError, UsageError
from strongroom.formats.manifest import Manifest
from strongroom.secret import Secret
from strongroom.server_storage import ServerStorage
from strongroom.sync import Syncer
from strongroom.transport import SyncRequest, SyncResponse
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.server_stores.postgresql import PostgresServerStorage
from strongroom_plugins.server_stores.sqlite import SqliteServerStorage
from sync_server import ReferenceServer, make_device
from tls_servers import Pki, make_pki, serve_asgi

CHUNK = 4096
#: 20 stored chunks and a short one: 22 transfer chunks with the header.
BLOB = 20 * CHUNK + 100
STORE, KEY = "notes", "video"
#: Never reached when the pipeline works: turns a regression into a failure, not a hang.
STUCK_S = 60


def _answer(status: int, body: object = None) -> SyncResponse:
    return SyncResponse(status, b"" if body is None else msgspec.msgpack.encode(body))


@dataclass
class Endpoints:
    """The upload and download endpoints over dicts, thread-safe like the real ones.

    ``before(index)`` and ``after(index)`` run in the requesting thread
    around serving a chunk request: a test stalls, orders or fails them there.
    """

    before: Callable[[int], None] = lambda index: None
    after: Callable[[int], None] = lambda index: None
    declared: dict[str, list[bytes]] = field(default_factory=dict)
    received: dict[str, dict[int, bytes]] = field(default_factory=dict)
    blobs: dict[str, list[bytes]] = field(default_factory=dict)
    puts: list[int] = field(default_factory=list)
    gets: list[int] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, request: SyncRequest) -> SyncResponse:
        parts = request.path.split("/")[4:]  # after /v1/accounts/{account}
        if parts[-2:-1] != ["chunks"]:
            return self._control(request.method, parts, request.body)
        index = int(parts[-1])
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.before(index)
            answer = self._chunk(request.method, parts[1], index, request.body)
            self.after(index)
            return answer
        finally:
            with self.lock:
                self.active -= 1

    def _control(self, method: str, parts: list[str], body: bytes) -> SyncResponse:
        if method == "POST" and parts == ["uploads"]:
            begun = msgspec.msgpack.decode(body)
            upload = hashlib.sha256(b"".join(begun["chunk_hashes"])).hexdigest()[:16]
            with self.lock:
                self.declared[upload] = begun["chunk_hashes"]
                self.received.setdefault(upload, {})
            return _answer(200, {"upload": upload, "missing": self._missing(upload)})
        if method == "GET":
            return _answer(200, {"missing": self._missing(parts[1])})
        upload = parts[1]  # a commit
        if self._missing(upload):
            return _answer(409, {"error": "incomplete"})
        received = self.received[upload]
        self.blobs[KEY] = [received[index] for index in range(len(received))]
        return _answer(200, {"key": KEY, "seq": 1, "conflict": False})

    def _missing(self, upload: str) -> list[int]:
        with self.lock:
            have = self.received[upload]
            return [index for index in range(len(self.declared[upload])) if index not in have]

    def _chunk(self, method: str, upload: str, index: int, body: bytes) -> SyncResponse:
        with self.lock:
            if method == "GET":
                self.gets.append(index)
                return SyncResponse(200, self.blobs[KEY][index])
            self.puts.append(index)
            if hashlib.sha256(body).digest() != self.declared[upload][index]:
                return _answer(422, {"error": "hash"})
            self.received[upload][index] = body
            return SyncResponse(204)


@dataclass
class Staged:
    mover: BlobMover
    server_key: str
    state: Upload
    manifest: Manifest
    ciphertext: bytes


@pytest.fixture
def endpoints() -> Endpoints:
    return Endpoints()


@pytest.fixture
def staged(tmp_path: Path, endpoints: Endpoints) -> Staged:
    codec = SyncCodec("alice", Aes256Gcm(), Secret(os.urandom(32), label="sync key"), 1)
    mover = BlobMover(endpoints.send, "alice", tmp_path / "staging", codec, CHUNK, in_flight=4)
    server_key = codec.server_key(STORE, KEY)
    name, manifest = mover.stage(iter([os.urandom(BLOB)]), codec.context(server_key))
    _, envelope = codec.seal(Payload(STORE, KEY, manifest=manifest.to_bytes()))
    state = Upload(b"", 0, name, envelope, "idempotency-key")
    ciphertext = (tmp_path / "staging" / name).read_bytes()
    return Staged(mover, server_key, state, manifest, ciphertext)


def transfer_chunks(staged: Staged) -> list[bytes]:
    manifest, data = staged.manifest, staged.ciphertext
    count = manifest.chunk_count + 1
    return [data[_offset(manifest, i) : _offset(manifest, i + 1)] for i in range(count)]


def uploaded(staged: Staged, endpoints: Endpoints) -> None:
    staged.mover.upload(staged.server_key, staged.state, Transferred())
    endpoints.puts.clear()
    assert endpoints.blobs[KEY] == transfer_chunks(staged)


def fetch(staged: Staged, moved: Transferred | None = None) -> Path:
    envelope, manifest = staged.state.envelope, staged.manifest
    return staged.mover.fetch(staged.server_key, envelope, manifest, moved or Transferred())


def backwards(endpoints: Endpoints, count: int) -> None:
    """Serve each group of four chunk requests last first: chunk ``i`` waits for ``i + 1``.

    Deadlock-free with four in flight, since a group is always in flight together.
    """
    served = [threading.Event() for _ in range(count)]

    def wait_for_next(index: int) -> None:
        if index % 4 != 3 and index + 1 < count:
            assert served[index + 1].wait(STUCK_S), "chunks were not in flight together"

    endpoints.before = wait_for_next
    endpoints.after = lambda index: served[index].set()


def blob_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("strongroom-blob")]


# uploads


def test_an_upload_keeps_in_flight_chunks_at_most_and_fills_the_window(
    staged: Staged, endpoints: Endpoints
) -> None:
    window = threading.Barrier(4, timeout=STUCK_S)  # the first four PUTs, in flight together

    def first_window_together(index: int) -> None:
        if index < 4:
            window.wait()

    endpoints.before = first_window_together
    moved = Transferred()
    answer = staged.mover.upload(staged.server_key, staged.state, moved)
    assert (answer.seq, answer.conflict) == (1, False)
    assert endpoints.most_active == 4
    assert sorted(endpoints.puts) == list(range(22))  # each chunk once
    assert moved.sent == 22
    assert endpoints.blobs[KEY] == transfer_chunks(staged)


def test_chunks_landing_out_of_order_commit_the_same_object(
    staged: Staged, endpoints: Endpoints
) -> None:
    backwards(endpoints, 22)
    staged.mover.upload(staged.server_key, staged.state, Transferred())
    assert endpoints.puts[:4] == [3, 2, 1, 0]
    assert endpoints.blobs[KEY] == transfer_chunks(staged)


def test_a_failed_chunk_stops_new_requests_waits_for_the_rest_and_resumes(
    staged: Staged, endpoints: Endpoints
) -> None:
    failed = threading.Event()
    started: list[int] = []

    def fail_from_chunk_one(index: int) -> None:
        """Chunk 1 and every chunk after the first window fail; 0, 2 and 3 land after 1."""
        started.append(index)
        if index == 1 or index >= 4:
            failed.set()
            raise TransportError("the network went away mid-upload")
        assert failed.wait(STUCK_S)

    endpoints.before = fail_from_chunk_one
    moved = Transferred()
    with pytest.raises(TransportError, match="mid-upload"):
        staged.mover.upload(staged.server_key, staged.state, moved)
    assert not blob_threads()  # every request in flight was waited for
    landed = sorted(endpoints.puts)
    assert 1 not in landed
    assert moved.sent == len(landed) == 3
    assert landed == [0, 2, 3]
    # a chunk is issued only for one that landed (three did) until a failure is seen
    assert len(started) <= 4 + 3
    assert KEY not in endpoints.blobs
    endpoints.before = lambda index: None
    endpoints.puts.clear()
    resumed = Transferred()
    staged.mover.upload(staged.server_key, staged.state, resumed)
    assert sorted(endpoints.puts) == sorted(set(range(22)) - set(landed))  # only the missing
    assert moved.sent + resumed.sent == 22
    assert endpoints.blobs[KEY] == transfer_chunks(staged)


def test_a_chunk_the_server_refuses_is_raised_after_the_others_in_flight(
    staged: Staged, endpoints: Endpoints
) -> None:
    corrupt = Path(staged.mover.directory / staged.state.staged)
    data = bytearray(corrupt.read_bytes())
    offset, _ = staged.manifest.chunk_span(4)  # transfer chunk 5
    data[offset] ^= 1
    corrupt.write_bytes(bytes(data))
    with pytest.raises(TransportError, match="422"):
        staged.mover.upload(staged.server_key, staged.state, Transferred())
    assert not blob_threads()
    assert KEY not in endpoints.blobs


# downloads


def test_a_download_fetches_ahead_but_appends_in_order(
    staged: Staged, endpoints: Endpoints
) -> None:
    uploaded(staged, endpoints)
    backwards(endpoints, 22)
    wait_for_next = endpoints.before
    behind: list[int] = []

    def bounded(index: int) -> None:
        """Record how far ahead of the appended prefix each request is."""
        [path] = staged.mover.directory.glob("down-*.part")
        size = path.stat().st_size
        appended = max(i for i in range(23) if _offset(staged.manifest, i) <= size)
        behind.append(index - appended)
        wait_for_next(index)

    endpoints.before = bounded
    moved = Transferred()
    path = fetch(staged, moved)
    assert path.read_bytes() == staged.ciphertext
    assert moved.fetched == 22
    assert sorted(endpoints.gets) == list(range(22))
    assert endpoints.gets[:4] == [3, 2, 1, 0]
    assert max(behind) < 4  # never more than in_flight chunks fetched and not yet appended


def test_a_bad_chunk_leaves_a_verified_prefix_that_a_resume_completes(
    staged: Staged, endpoints: Endpoints
) -> None:
    uploaded(staged, endpoints)
    good = list(endpoints.blobs[KEY])
    endpoints.blobs[KEY][9] = b"\0" + good[9][1:]
    with pytest.raises(IntegrityError, match="chunk 9"):
        fetch(staged)
    assert not blob_threads()
    [part] = staged.mover.directory.glob("down-*.part")
    assert part.read_bytes() == staged.ciphertext[: _offset(staged.manifest, 9)]
    endpoints.blobs[KEY] = good
    endpoints.gets.clear()
    moved = Transferred()
    assert fetch(staged, moved).read_bytes() == staged.ciphertext
    assert sorted(endpoints.gets) == list(range(9, 22))
    assert moved.fetched == 13


def test_a_failed_request_keeps_only_the_chunks_before_it(
    staged: Staged, endpoints: Endpoints
) -> None:
    uploaded(staged, endpoints)

    def drop_chunk_six(index: int) -> None:
        if index == 6:
            raise TransportError("the network went away mid-download")

    endpoints.before = drop_chunk_six
    moved = Transferred()
    with pytest.raises(TransportError, match="mid-download"):
        fetch(staged, moved)
    assert moved.fetched == 6
    assert not blob_threads()
    [part] = staged.mover.directory.glob("down-*.part")
    assert part.read_bytes() == staged.ciphertext[: _offset(staged.manifest, 6)]


def test_one_in_flight_moves_one_chunk_at_a_time(staged: Staged, endpoints: Endpoints) -> None:
    staged.mover.in_flight = 1
    uploaded(staged, endpoints)
    assert fetch(staged).read_bytes() == staged.ciphertext
    assert endpoints.most_active == 1


def test_in_flight_is_at_least_one() -> None:
    no_stack: Any = None
    with pytest.raises(UsageError, match="in_flight"):
        Syncer(no_stack, "notes", in_flight=0)


# end to end: the reference server takes one upload's chunks concurrently and out of order


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def devices(tmp_path: Path, pki: Pki) -> Iterator[tuple[ReferenceServer, Syncer, Syncer]]:
    server = ReferenceServer(tmp_path / "server.db")
    with serve_asgi(server.app(), pki.server) as url:
        phone_stack = make_device(tmp_path / "phone", url, pki, server, "phone-1")
        laptop_stack = make_device(tmp_path / "laptop", url, pki, server, "laptop-1")
        with phone_stack, laptop_stack:
            phone = Syncer(phone_stack, STORE, chunk_size=CHUNK, in_flight=4)
            laptop = Syncer(laptop_stack, STORE, chunk_size=CHUNK, in_flight=4)
            phone.create_key()
            laptop.import_key(phone.export_key())
            yield server, phone, laptop
            phone.close()
            laptop.close()
    server.storage.close()


def test_the_reference_server_takes_chunks_concurrently_and_out_of_order(
    devices: tuple[ReferenceServer, Syncer, Syncer],
) -> None:
    server, phone, laptop = devices
    blob = os.urandom(BLOB)
    phone.store.put_blob(KEY, [blob])
    landed = [threading.Event() for _ in range(22)]

    def last_first(request: SyncRequest) -> SyncResponse:
        """Each group of four PUTs reaches the server last first (as ``backwards``)."""
        index = int(request.path.rsplit("/", 1)[1]) if request.method == "PUT" else -1
        if index >= 0 and index % 4 != 3 and index + 1 < 22:
            assert landed[index + 1].wait(STUCK_S), "chunks were not in flight together"
        try:
            return phone.stack.send(request)
        finally:
            if index >= 0:
                landed[index].set()

    phone.send = last_first
    report = phone.sync()
    assert report.pushed == [KEY]
    assert report.chunks_sent == 22
    assert server.chunk_puts[:4] == [3, 2, 1, 0]
    assert Counter(server.chunk_puts) == Counter(range(22))
    pulled = laptop.sync()
    assert (pulled.pulled, pulled.chunks_fetched) == ([KEY], 22)
    assert b"".join(laptop.store.get_blob(KEY)) == blob


@pytest.fixture(params=["sqlite", "postgresql"])
def server_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerStorage]:
    if request.param == "sqlite":
        settings = SqliteServerStorage.Settings(path=str(tmp_path / "server.db"))
        storage: ServerStorage = SqliteServerStorage(settings)
        yield storage
        storage.close()
        return
    with running_postgres() as postgres:
        storage = PostgresServerStorage(
            PostgresServerStorage.Settings.from_table(postgres.settings("postgres"))
        )
        yield storage
        storage.close()


def test_both_server_stores_take_one_uploads_chunks_at_once_in_any_order(
    server_storage: ServerStorage,
) -> None:
    chunks = [os.urandom(1000 + index) for index in range(16)]
    hashes = [hashlib.sha256(chunk).digest() for chunk in chunks]
    upload = server_storage.begin_blob("alice", "blob-id", b"manifest", hashes)
    start = threading.Barrier(8, timeout=STUCK_S)

    def put(index: int) -> None:
        if index >= 8:  # the first eight (the last chunks) start together
            start.wait()
        server_storage.put_chunk("alice", upload, index, chunks[index])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, reversed(range(16))))
    assert server_storage.missing_chunks("alice", upload) == []
    assert not server_storage.commit_blob("alice", upload, 0).conflict
    assert [server_storage.get_chunk("alice", "blob-id", i) for i in range(16)] == chunks


# context

CALLER = contextvars.ContextVar("caller", default="none")


def test_chunk_requests_run_in_the_callers_context(staged: Staged, endpoints: Endpoints) -> None:
    """Background work set up by the caller (a context variable) holds in every chunk worker."""
    seen: set[str] = set()
    endpoints.before = lambda index: seen.add(CALLER.get())
    token = CALLER.set("sync")
    try:
        staged.mover.upload(staged.server_key, staged.state, Transferred())
        fetch(staged)
    finally:
        CALLER.reset(token)
    assert seen == {"sync"}
