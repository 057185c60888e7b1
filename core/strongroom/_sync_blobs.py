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
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

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
from strongroom.formats.manifest import Manifest, manifest_of
from strongroom.signing.headers import IDEMPOTENCY_KEY
from strongroom.transport import SyncRequest, SyncResponse

if TYPE_CHECKING:
    from strongroom._sync_codec import SyncCodec
    from strongroom._sync_state import Upload
    from strongroom.formats.context import Context

__all__ = ["BlobMover", "Transferred"]

_PART = ".part"


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

    # upload

    def stage(self, chunks: Iterator[bytes], context: Context) -> str:
        """Seal the blob into a new private file; return its name."""
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
            )
            try:
                for chunk in chunks:
                    writer.write(chunk)
                writer.close()
            except BaseException:
                writer.abort()
                path.unlink(missing_ok=True)
                raise
            sink.flush()
            os.fsync(sink.fileno())
        fsync_dir(self.directory)
        return name

    def manifest(self, staged: str) -> Manifest:
        """The chunked format's manifest of a staged object."""
        with (self.directory / staged).open("rb") as source:
            return manifest_of(source)

    def upload(self, server_key: str, state: Upload, moved: Transferred) -> CommitAnswer:
        """Send what the server lacks of the staged object, then commit it.

        ``state.envelope`` is the sealed manifest the server keeps as the
        blob's ``manifest``: the same bytes on every resume.

        :raises strongroom.errors.TransportError: the server could not be reached or refused.
        """
        path = self.directory / state.staged
        with path.open("rb") as source:
            manifest = manifest_of(source)
            source.seek(0)
            header = source.read(HEADER_SIZE)
            hashes = [hashlib.sha256(header).digest(), *manifest.chunk_sha256]
            body = {"key": server_key, "manifest": state.envelope, "chunk_hashes": hashes}
            begun = decode_answer(self._post("uploads", body), UploadAnswer)
            upload = quote(begun.upload)
            missing = begun.missing
            # per upload: one committed before a crash is not open any more, and a new
            # upload id is a new path, which the first commit's key would not match
            commit_key = (
                f"{state.idempotency_key}.{hashlib.sha256(upload.encode()).hexdigest()[:16]}"
            )
            for _ in range(2):  # a commit refused as incomplete looks again, once
                for index in missing:
                    self._put_chunk(upload, index, _read_chunk(source, manifest, header, index))
                    moved.sent += 1
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
            for index in range(have, len(hashes)):
                chunk_path = account_path(self.account, f"blobs/{blob}/chunks/{index}")
                chunk = self.send(SyncRequest("GET", chunk_path))
                if chunk.status != 200:
                    decode_answer(chunk, type(None))
                if hashlib.sha256(chunk.body).digest() != hashes[index]:
                    raise IntegrityError(f"chunk {index} of a blob does not match its manifest")
                sink.write(chunk.body)
                sink.flush()
                moved.fetched += 1
            os.fsync(sink.fileno())
        return path

    def open_staged(self, path: Path, context: Context) -> Iterator[bytes]:
        """The verified plaintext of a fetched object, chunk by chunk."""
        with path.open("rb") as source:
            yield from ChunkedReader(source, self.codec.key_for, context).iter_chunks()


def _random_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


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
