"""Blobs moved chunk by chunk, resuming where an interrupted transfer stopped.

A blob travels as the chunked object sealed under the sync key, cut into
transfer chunks: chunk 0 is its header, chunk ``i`` (from 1) its stored
chunk ``i - 1``.  ``chunk_hashes`` are their SHA-256 (chunk 0's is the
manifest's header hash).  The protocol's ``manifest`` is an *envelope*:
the chunked format's manifest with the blob's name, sealed under the sync
key (``strongroom.sync``), so the hashes a download checks each chunk
against are authenticated, not the server's word.

An upload stages the sealed object in a private file first (ciphertext
only; encrypting again would pick a new salt and change every hash), so a
resumed upload offers the same hashes, the server hands back the same
upload, and only the chunks it reports ``missing`` are sent.  A download
appends each chunk to a ``.part`` file only once its hash matches the
authenticated manifest; a
resumed one re-hashes the chunks already there and fetches the rest.  The
plaintext reaches the store only from the finished object, through the
chunked format's reader, which authenticates every chunk.

Chunk requests overlap, ``in_flight`` at a time (each pays a signed round
trip, so one at a time leaves the link idle): an upload reads a chunk only
when a slot is free and stops issuing new ones at the first failure; a
download fetches ahead but appends strictly in order, so the ``.part`` file
stays a verified prefix.  Either holds at most ``in_flight`` chunks in memory.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from strongroom._sync_wire import (
    MSGPACK,
    BlobAnswer,
    CommitAnswer,
    MissingAnswer,
    UploadAnswer,
    account_path,
    decode_answer,
    encode,
    quote,
)
from strongroom.durable import fsync_dir, make_private_dir, open_private
from strongroom.errors import IntegrityError, TransportError
from strongroom.formats.chunked import HEADER_SIZE, ChunkedReader, ChunkedWriter
from strongroom.formats.manifest import Manifest
from strongroom.signing.headers import IDEMPOTENCY_KEY
from strongroom.transport import SyncRequest, SyncResponse

if TYPE_CHECKING:
    from strongroom._sync_codec import SyncCodec
    from strongroom._sync_state import Upload
    from strongroom.formats.context import Context

__all__ = ["IN_FLIGHT", "BlobMover", "Transferred"]

#: Chunk requests a blob transfer keeps in flight by default (``Syncer(in_flight=...)``).
IN_FLIGHT = 4
_PART = ".part"
T = TypeVar("T")


@dataclass
class Transferred:
    """Chunks moved by one call: what the resume tests count."""

    sent: int = 0
    fetched: int = 0


@dataclass
class BlobMover:
    """Moves blobs of ``account`` through ``send``, staging in ``directory``."""

    send: Callable[[SyncRequest], SyncResponse]
    account: str
    directory: Path
    codec: SyncCodec
    chunk_size: int
    in_flight: int = IN_FLIGHT

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.in_flight, thread_name_prefix="strongroom-blob")

    # upload

    def stage(self, chunks: Iterator[bytes], context: Context) -> tuple[str, Manifest]:
        """Seal the blob into a new private file; its name and manifest (hashed as written)."""
        make_private_dir(self.directory)
        name = f"up-{os.urandom(12).hex()}"
        path = self.directory / name
        with os.fdopen(open_private(path), "wb") as sink:
            codec = self.codec
            writer = ChunkedWriter(
                sink,
                codec.suite,
                codec.key.view(),
                codec.version,
                context,
                chunk_size=self.chunk_size,
                manifest=True,
            )
            try:
                for chunk in chunks:
                    writer.write(chunk)
                manifest = writer.close()
            except BaseException:
                writer.abort()
                path.unlink(missing_ok=True)
                raise
            sink.flush()
            os.fsync(sink.fileno())
        fsync_dir(self.directory)
        assert manifest is not None  # noqa: S101 - asked for
        return name, manifest

    def upload(self, server_key: str, state: Upload, moved: Transferred) -> CommitAnswer:
        """Send what the server lacks of the staged object, then commit it.

        ``state.envelope`` is the sealed manifest the server keeps as the
        blob's ``manifest``: the same bytes on every resume, and the chunk
        hashes come from it, so the staged file is not read twice.

        :raises strongroom.errors.TransportError: the server could not be reached or refused.
        """
        manifest = self._envelope_manifest(server_key, state.envelope)
        with (self.directory / state.staged).open("rb") as source:
            header = source.read(HEADER_SIZE)
            hashes = [manifest.header_sha256, *manifest.chunk_sha256]
            body = {"key": server_key, "manifest": state.envelope, "chunk_hashes": hashes}
            begun = decode_answer(self._post("uploads", body), UploadAnswer)
            upload = quote(begun.upload)
            missing = begun.missing
            # per upload: one committed before a crash is not open any more, and a new
            # upload id is a new path, which the first commit's key would not match
            commit_key = (
                f"{state.idempotency_key}.{hashlib.sha256(upload.encode()).hexdigest()[:16]}"
            )

            def read(index: int) -> bytes:
                return _read_chunk(source, manifest, header, index)

            for _ in range(2):  # a commit refused as incomplete looks again, once
                self._send_chunks(upload, missing, read, moved)
                answer = self._post(
                    f"uploads/{upload}/commit",
                    {"base_seq": state.base_seq},
                    idempotency_key=commit_key,
                )
                if answer.status != 409:
                    return decode_answer(answer, CommitAnswer)
                status = self.send(
                    SyncRequest("GET", account_path(self.account, f"uploads/{upload}"))
                )
                missing = decode_answer(status, MissingAnswer).missing
        raise TransportError("the sync server still reports chunks missing after sending them")

    def _envelope_manifest(self, server_key: str, envelope: bytes) -> Manifest:
        """The manifest sealed at staging: what a download checks, so what to offer."""
        manifest = self.codec.open(server_key, envelope).manifest
        if manifest is None:
            raise IntegrityError("a staged upload's envelope holds no manifest")
        return Manifest.from_bytes(manifest)

    def _send_chunks(
        self, upload: str, missing: list[int], read: Callable[[int], bytes], moved: Transferred
    ) -> None:
        """PUT each chunk in ``missing``, ``in_flight`` at a time; any order lands the same.

        A chunk is read only when a slot is free.  After the first failure
        no chunk is sent; those in flight are waited for (each that landed
        counts), then that failure is raised, and a resume sends what the
        server then reports missing.
        """
        flying: set[Future[None]] = set()
        failure: BaseException | None = None
        pool = self._pool()
        try:
            for index in missing:
                if len(flying) >= self.in_flight:
                    done, _ = wait(flying, return_when=FIRST_COMPLETED)
                    failure = _landed(done, flying, moved)
                    if failure is not None:
                        break
                flying.add(_submit(pool, self._put_chunk, upload, index, read(index)))
            wait(flying)
        finally:
            pool.shutdown(cancel_futures=True)  # waits for those in flight
            last = _landed(set(flying), flying, moved)
        failure = failure or last
        if failure is not None:
            raise failure

    def _put_chunk(self, upload: str, index: int, data: bytes) -> None:
        path = account_path(self.account, f"uploads/{upload}/chunks/{index}")
        headers = {"Content-Type": "application/octet-stream"}
        answer = self.send(SyncRequest("PUT", path, data, headers))
        if answer.status != 204:
            decode_answer(answer, type(None), status=204)

    def _post(self, rest: str, body: object, *, idempotency_key: str | None = None) -> SyncResponse:
        headers = dict(MSGPACK)
        headers[IDEMPOTENCY_KEY] = idempotency_key or _random_key()
        return self.send(
            SyncRequest("POST", account_path(self.account, rest), encode(body), headers)
        )

    def discard(self, staged: str) -> None:
        (self.directory / staged).unlink(missing_ok=True)

    # download

    def describe(self, server_key: str) -> BlobAnswer:
        """The server's record of the blob: its seq, sealed manifest and chunk hashes.

        :raises strongroom.errors.TransportError: the server could not be reached or refused.
        """
        answer = self.send(
            SyncRequest("GET", account_path(self.account, f"blobs/{quote(server_key)}"))
        )
        return decode_answer(answer, BlobAnswer)

    def fetch(
        self, server_key: str, envelope: bytes, manifest: Manifest, moved: Transferred
    ) -> Path:
        """Fetch the blob into a file, each chunk checked against the authenticated ``manifest``.

        A ``.part`` file left by an interrupted fetch of the same blob is
        kept up to its last chunk that still matches its hash.  The caller
        opens the result with :meth:`open_staged` and removes it.

        :raises strongroom.errors.TransportError: the server could not be reached or refused.
        :raises strongroom.errors.IntegrityError: a chunk's hash is not the manifest's.
        """
        blob = quote(server_key)
        hashes = [manifest.header_sha256, *manifest.chunk_sha256]
        label = hashlib.sha256(server_key.encode() + envelope).hexdigest()[:32]
        make_private_dir(self.directory)
        path = self.directory / f"down-{label}{_PART}"
        have = _verified_prefix(path, manifest, hashes)
        with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as sink:
            sink.truncate(_offset(manifest, have))
            sink.seek(0, os.SEEK_END)
            self._fetch_chunks(sink, blob, hashes, have, moved)
            os.fsync(sink.fileno())
        return path

    def _fetch_chunks(
        self, sink: BinaryIO, blob: str, hashes: list[bytes], have: int, moved: Transferred
    ) -> None:
        """GET chunks ``have`` on, ``in_flight`` ahead, appending each in order once verified.

        The ``.part`` file so only ever grows by the next chunk whose hash
        matches; chunks fetched ahead of a failure are dropped (a resume
        fetches them again) and those not yet started are cancelled.
        """
        todo = iter(range(have, len(hashes)))
        ahead: deque[Future[bytes]] = deque()
        pool = self._pool()
        try:
            self._fetch_ahead(pool, ahead, todo, blob, hashes)
            while ahead:
                _append(sink, ahead.popleft())
                moved.fetched += 1
                self._fetch_ahead(pool, ahead, todo, blob, hashes)
        finally:
            pool.shutdown(cancel_futures=True)

    def _fetch_ahead(
        self,
        pool: ThreadPoolExecutor,
        ahead: deque[Future[bytes]],
        todo: Iterator[int],
        blob: str,
        hashes: list[bytes],
    ) -> None:
        """Start fetching (and verifying) the next chunks until ``in_flight`` are awaited."""
        while len(ahead) < self.in_flight:
            index = next(todo, None)
            if index is None:
                return
            ahead.append(_submit(pool, self._get_chunk, blob, index, hashes[index]))

    def _get_chunk(self, blob: str, index: int, expected: bytes) -> bytes:
        """Chunk ``index``, hashed here, off the thread that appends.

        :raises strongroom.errors.IntegrityError: its hash is not ``expected``.
        """
        chunk_path = account_path(self.account, f"blobs/{blob}/chunks/{index}")
        chunk = self.send(SyncRequest("GET", chunk_path))
        if chunk.status != 200:
            decode_answer(chunk, type(None))
        if hashlib.sha256(chunk.body).digest() != expected:
            raise IntegrityError(f"chunk {index} of a blob does not match its manifest")
        return chunk.body

    def open_staged(self, path: Path, context: Context) -> Iterator[bytes]:
        """The verified plaintext of a fetched object, chunk by chunk."""
        with path.open("rb") as source:
            yield from ChunkedReader(source, self.codec.key_for, context).iter_chunks()


def _random_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def _submit(pool: ThreadPoolExecutor, call: Callable[..., T], *args: object) -> Future[T]:
    """``call`` in ``pool``, in a copy of this thread's context.

    A request signed in a worker thread must see what the caller set up:
    background work (``Strongroom.background``) stays background there, so
    no presence prompt can come from a sync a user did not start.
    """
    return pool.submit(contextvars.copy_context().run, call, *args)


def _landed(
    done: set[Future[None]], flying: set[Future[None]], moved: Transferred
) -> BaseException | None:
    """Count the chunks of ``done`` that landed, dropping all from ``flying``; a failure."""
    failure = None
    for future in done:
        flying.discard(future)
        if future.cancelled():
            continue
        error = future.exception()
        if error is None:
            moved.sent += 1
        elif failure is None:
            failure = error
    return failure


def _append(sink: BinaryIO, fetched: Future[bytes]) -> None:
    """Append the next chunk once verified (a function, so its bytes are freed on return)."""
    sink.write(fetched.result())
    sink.flush()


def _offset(manifest: Manifest, chunks: int) -> int:
    """Where transfer chunk ``chunks`` starts: the length of the ``chunks`` before it."""
    if chunks == 0:
        return 0
    if chunks == 1:
        return HEADER_SIZE
    offset, length = manifest.chunk_span(chunks - 2)
    return offset + length


def _read_chunk(source: BinaryIO, manifest: Manifest, header: bytes, index: int) -> bytes:
    if index == 0:
        return header
    offset, length = manifest.chunk_span(index - 1)
    source.seek(offset)
    return source.read(length)


def _verified_prefix(path: Path, manifest: Manifest, hashes: list[bytes]) -> int:
    """How many transfer chunks at the start of ``path`` match their hashes."""
    try:
        source = path.open("rb")
    except FileNotFoundError:
        return 0
    with source:
        count = 0
        for index, expected in enumerate(hashes):
            length = HEADER_SIZE if index == 0 else manifest.chunk_span(index - 1)[1]
            data = source.read(length)
            if len(data) != length or hashlib.sha256(data).digest() != expected:
                break
            count += 1
        return count
