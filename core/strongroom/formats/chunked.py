"""The chunked format: large blobs, streamed, with random access and a manifest.

::

    magic "SRck" (4) | version 0x01 (1) | suite code u16 BE (2) | key version u32 BE (4)
    | chunk size u32 BE (4) | salt (32) | key commitment (32)
    | chunk 0 | chunk 1 | ... | chunk n-1          each chunk: ciphertext || 16-byte tag

Every chunk but the last holds exactly ``chunk size`` plaintext bytes; the
last holds 0 to ``chunk size``.  Chunk ``i`` is sealed with the nonce
``prefix || u32 BE i || last flag`` and the associated data ``header ||
Context.encode()``, so truncating, reordering, duplicating, appending or
moving chunks between objects fails authentication.  ``docs/formats.md``
specifies every byte.

Decryption never hands out a chunk before its tag verified.  When a stream
fails part way, the output already written holds only whole, authenticated
chunks that precede the failure; the caller discards it (the CLI writes to
an unlinked temporary file and links it only on success).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Literal, Self, overload

from strongroom.cipher_suite import CipherSuite, ReadableBuffer
from strongroom.errors import AuthenticationError, UsageError
from strongroom.formats._derive import (
    KeyFor,
    derive,
    new_salt,
    nonce_size_chunked,
    pack_prefix,
    peek_key_version,
)
from strongroom.formats._fixed import fixed
from strongroom.formats._layout import (
    DEFAULT_CHUNK_SIZE,
    HEADER_REST,
    HEADER_SIZE,
    KIND,
    MAGIC,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MIN_CHUNK_SIZE,
    TAG_SIZE,
    Chunker,
    body_layout,
    check_chunk_size,
    open_header,
    parse_header,
    read_header,
)
from strongroom.formats._stream import (
    ByteSink,
    ByteSource,
    Outbox,
    SeekableByteSource,
    full_chunks,
    readinto_full,
    write_all,
)
from strongroom.formats.context import Context
from strongroom.formats.manifest import MANIFEST_MAGIC, Manifest, manifest_of

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MANIFEST_MAGIC",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "TAG_SIZE",
    "ByteSink",
    "ByteSource",
    "ChunkedReader",
    "ChunkedWriter",
    "Manifest",
    "SeekableByteSource",
    "decrypt_stream",
    "encrypt_stream",
    "manifest_of",
    "peek_key_version",
]


# encryption


class ChunkedWriter:
    """Encrypt a stream into ``sink``: ``write()`` as often as needed, then ``close()``.

    The header is written at once; chunks follow as soon as the writer knows
    they are not the last (it holds one chunk back).  ``close()`` writes the
    last chunk and, with ``manifest=True``, returns the :class:`Manifest` of
    chunk hashes a sync layer uploads by.  The manifest is opt-in: hashing
    every chunk costs more CPU than AES-GCM does, and :func:`manifest_of`
    computes the same manifest later from the ciphertext.  Used as a
    context manager, an exception leaves the object unfinished (no last
    chunk): the caller discards the sink.  The sink is not closed.

    With chunks of 256 KiB and more, chunks are written (and hashed) on
    worker threads: leave the sink alone until ``close()`` or ``abort()``
    has returned, which happens only once every write has finished.

    :raises strongroom.errors.UsageError: ``chunk_size`` is outside 4096 to
        64 MiB, the suite's tag is not 16 bytes, ``key`` is shorter than the
        suite's key size, or ``key_version`` is not an unsigned 32-bit integer.
    """

    def __init__(
        self,
        sink: ByteSink,
        suite: CipherSuite,
        key: ReadableBuffer,
        key_version: int,
        context: Context,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        manifest: bool = False,
    ) -> None:
        check_chunk_size(chunk_size)
        if suite.tag_size != TAG_SIZE:
            raise UsageError(f"the chunked format needs a suite with {TAG_SIZE}-byte tags")
        salt = new_salt(fixed()[0])
        derived = derive(suite, key, salt, KIND, nonce_size_chunked(suite))
        header = pack_prefix(MAGIC, suite, key_version) + HEADER_REST.pack(
            chunk_size, salt, derived.commitment
        )
        self._chunker = Chunker(derived.aead, derived.nonce, header + context.encode())
        self._chunk_size = chunk_size
        self._header_sha256 = hashlib.sha256(header).digest()
        self._buffer: memoryview | None = None  # allocated on the first buffered write
        self._fill = 0
        self._index = 0
        self._total = HEADER_SIZE
        self._state = "open"
        self._manifest: Manifest | None = None
        write_all(sink, memoryview(header))
        self._outbox = Outbox(sink, chunk_size + TAG_SIZE, hashing=manifest)

    def write(self, data: ReadableBuffer) -> int:
        """Take more plaintext; whole chunks known not to be the last are written out.

        :raises strongroom.errors.UsageError: the writer is closed or failed,
            or the object would exceed 2**32 chunks.
        """
        self._check_open()
        view = memoryview(data).cast("B")
        size, chunk_size, pos = len(view), self._chunk_size, 0
        try:
            while pos < size:
                if self._fill == chunk_size:  # more data follows: the held chunk is not last
                    self._emit(self._held(), last=False)
                    self._fill = 0
                if self._fill == 0 and size - pos > chunk_size:  # straight from the caller
                    self._emit(view[pos : pos + chunk_size], last=False)
                    pos += chunk_size
                    continue
                buffer = self._held_buffer()
                take = min(chunk_size - self._fill, size - pos)
                buffer[self._fill : self._fill + take] = view[pos : pos + take]
                self._fill += take
                pos += take
        except BaseException:
            self.abort()
            raise
        return size

    def close(self) -> Manifest | None:
        """Write the last chunk; return the manifest if one was asked for, else ``None``.

        Closing twice returns the same again.

        :raises strongroom.errors.UsageError: the writer failed or was aborted.
        """
        if self._state == "closed":
            return self._manifest
        self._check_open()
        try:
            self._emit(self._held(), last=True)
            return self._finish()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without finishing the object; the sink holds an unusable prefix.

        Waits for chunks already handed to the writer thread, so nothing
        reaches the sink after it returns.
        """
        if self._state == "open":
            self._state = "failed"
        self._outbox.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<ChunkedWriter {self._state}, {self._index} chunks written (key hidden)>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a ChunkedWriter holds a key and cannot be pickled")

    # internals, also driven by encrypt_stream

    def _check_open(self) -> None:
        if self._state != "open":
            raise UsageError(f"the chunked writer is {self._state}")

    def _held_buffer(self) -> memoryview:
        if self._buffer is None:
            self._buffer = memoryview(bytearray(self._chunk_size))
        return self._buffer

    def _held(self) -> memoryview:
        if self._buffer is None:
            return memoryview(b"")
        return self._buffer[: self._fill]

    def _emit(self, plaintext: memoryview, *, last: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise UsageError("the chunked format holds at most 2**32 chunks")
        out = self._outbox.buffer()[: len(plaintext) + TAG_SIZE]
        self._chunker.seal_into(self._index, last, plaintext, out)
        self._outbox.ship(out)
        self._index += 1
        self._total += len(out)

    def _finish(self) -> Manifest | None:
        digests = self._outbox.finish()
        self._state = "closed"
        if digests is not None:
            self._manifest = Manifest(
                self._header_sha256, tuple(digests), self._chunk_size, self._total
            )
        return self._manifest


@overload
def encrypt_stream(
    source: ByteSource,
    sink: ByteSink,
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    context: Context,
    *,
    chunk_size: int = ...,
    manifest: Literal[True],
) -> Manifest: ...
@overload
def encrypt_stream(
    source: ByteSource,
    sink: ByteSink,
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    context: Context,
    *,
    chunk_size: int = ...,
    manifest: Literal[False] = ...,
) -> None: ...
@overload
def encrypt_stream(
    source: ByteSource,
    sink: ByteSink,
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    context: Context,
    *,
    chunk_size: int = ...,
    manifest: bool,
) -> Manifest | None: ...
def encrypt_stream(  # noqa: PLR0917 - the order of seal() and ChunkedWriter
    source: ByteSource,
    sink: ByteSink,
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    context: Context,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    manifest: bool = False,
) -> Manifest | None:
    """Encrypt everything ``source`` holds (to EOF) into ``sink`` as one chunked object.

    ``source`` need not be seekable.  Returns the :class:`Manifest` with
    ``manifest=True``, else ``None`` (see :class:`ChunkedWriter`).  On an
    exception, ``sink`` holds an unfinished object that the caller discards.

    :raises strongroom.errors.UsageError: as :class:`ChunkedWriter`, or
        ``source`` is non-blocking.
    """
    writer = ChunkedWriter(
        sink,
        suite,
        key,
        key_version,
        context,
        chunk_size=chunk_size,
        manifest=manifest,
    )
    try:
        for plaintext, last in full_chunks(source, chunk_size):
            writer._emit(plaintext, last=last)
        return writer._finish()
    except BaseException:
        writer.abort()
        raise


# decryption


class ChunkedReader:
    """Random access to a chunked object in a seekable ``source``.

    The object starts at the source's position when the reader is built.
    Construction reads the header, looks the key up, checks the commitment
    and authenticates the last chunk, so ``chunk_count`` and
    ``plaintext_size`` are authenticated and a truncated or extended object
    is refused up front.  Every read authenticates each chunk it touches
    before any of its plaintext is returned.  Not thread-safe: the reader
    seeks its source and reuses its buffers.

    :raises strongroom.errors.UsageError: ``source`` is not seekable.
    :raises strongroom.errors.IntegrityError: not a chunked object of a
        known version, or a malformed header.
    :raises strongroom.errors.AuthenticationError: wrong key, suite or
        context, or altered, truncated or extended data.
    """

    def __init__(self, source: SeekableByteSource, key_for: KeyFor, context: Context) -> None:
        if not source.seekable():
            raise UsageError("ChunkedReader needs a seekable source; use decrypt_stream")
        self._source = source
        self._base = source.tell()
        raw = read_header(source)
        header = parse_header(raw)
        aead, prefix = open_header(header, key_for)
        self._chunker = Chunker(aead, prefix, raw + context.encode())
        self._key_version = header.key_version
        self._chunk_size = header.chunk_size
        self._stride = header.chunk_size + TAG_SIZE
        end = source.seek(0, os.SEEK_END)
        layout = body_layout(end - self._base - HEADER_SIZE, header.chunk_size)
        if layout is None:
            raise AuthenticationError
        self._chunk_count, self._plaintext_size = layout
        self._in = memoryview(bytearray(self._stride))
        self._out = memoryview(bytearray(self._chunk_size))
        self._open_chunk(self._chunk_count - 1, self._out)

    @property
    def key_version(self) -> int:
        return self._key_version

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes in every chunk but the last."""
        return self._chunk_size

    @property
    def chunk_count(self) -> int:
        return self._chunk_count

    @property
    def plaintext_size(self) -> int:
        return self._plaintext_size

    def chunk_length(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``.

        :raises IndexError: no such chunk.
        """
        self._check_index(index)
        if index < self._chunk_count - 1:
            return self._chunk_size
        return self._plaintext_size - index * self._chunk_size

    def read_chunk(self, index: int) -> bytes:
        """The authenticated plaintext of chunk ``index``.

        :raises IndexError: no such chunk.
        :raises strongroom.errors.AuthenticationError: the chunk does not verify.
        """
        size = self._open_chunk(index, self._out)
        return bytes(self._out[:size])

    def readinto_chunk(self, index: int, buffer: bytearray | memoryview) -> int:
        """Decrypt chunk ``index`` into the start of ``buffer``; return its length.

        On failure the bytes of ``buffer`` it would have filled are zero.

        :raises IndexError: no such chunk.
        :raises strongroom.errors.UsageError: ``buffer`` is shorter than the chunk.
        :raises strongroom.errors.AuthenticationError: the chunk does not verify.
        """
        view = memoryview(buffer).cast("B")
        if len(view) < self.chunk_length(index):
            raise UsageError("buffer is shorter than the chunk")
        return self._open_chunk(index, view)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` plaintext bytes from ``offset``, opening only the chunks needed.

        Like a file read, the result is short at the end of the plaintext and
        empty past it.

        :raises strongroom.errors.UsageError: ``offset`` or ``size`` is negative.
        :raises strongroom.errors.AuthenticationError: a chunk does not verify.
        """
        if offset < 0 or size < 0:
            raise UsageError("offset and size must not be negative")
        end = min(offset + size, self._plaintext_size)
        if offset >= end:
            return b""
        result = memoryview(bytearray(end - offset))
        chunk_size = self._chunk_size
        for index in range(offset // chunk_size, (end - 1) // chunk_size + 1):
            start = index * chunk_size
            stop = start + self.chunk_length(index)
            low, high = max(offset, start), min(end, stop)
            if low == start and high == stop:  # the whole chunk: decrypt in place
                self._open_chunk(index, result[low - offset : high - offset])
            else:
                self._open_chunk(index, self._out)
                result[low - offset : high - offset] = self._out[low - start : high - start]
        return bytes(result)

    def iter_chunks(self) -> Iterator[bytes]:
        """Each chunk's authenticated plaintext in order.

        :raises strongroom.errors.AuthenticationError: a chunk does not verify;
            the chunks before it have already been yielded.
        """
        for index in range(self._chunk_count):
            yield self.read_chunk(index)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._chunk_count:
            raise IndexError("chunk index out of range")

    def _open_chunk(self, index: int, out: memoryview) -> int:
        self._check_index(index)
        last = index == self._chunk_count - 1
        stored = self._stride
        if last:
            stored = self._plaintext_size - index * self._chunk_size + TAG_SIZE
        self._source.seek(self._base + HEADER_SIZE + index * self._stride)
        view = self._in[:stored]
        if readinto_full(self._source, view) != stored:  # the source shrank under us
            raise AuthenticationError
        size = stored - TAG_SIZE
        self._chunker.open_into(index, last, view, out[:size])
        return size

    def __repr__(self) -> str:
        return (
            f"<ChunkedReader {self._chunk_count} chunks, {self._plaintext_size} bytes (key hidden)>"
        )

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a ChunkedReader holds a key and cannot be pickled")


def decrypt_stream(source: ByteSource, sink: ByteSink, key_for: KeyFor, context: Context) -> int:
    """Decrypt a chunked object read from ``source`` (to EOF) into ``sink``.

    ``source`` need not be seekable (stdin works): chunks are read one ahead
    to tell the last.  Each chunk is written only after it authenticated.
    If an error is raised, ``sink`` holds the whole chunks before the
    failing one: the caller must discard it.  Returns the plaintext size.

    :raises strongroom.errors.IntegrityError: not a chunked object of a
        known version, or a malformed header.
    :raises strongroom.errors.AuthenticationError: wrong key, suite or
        context, or altered, truncated, extended or reordered data.
    :raises strongroom.errors.UsageError: ``source`` is non-blocking.
    """
    raw = read_header(source)
    header = parse_header(raw)
    aead, prefix = open_header(header, key_for)
    chunker = Chunker(aead, prefix, raw + context.encode())
    outbox = Outbox(sink, header.chunk_size, hashing=False)
    written = 0
    try:
        chunks = full_chunks(source, header.chunk_size + TAG_SIZE)
        for index, (stored, last) in enumerate(chunks):
            size = len(stored) - TAG_SIZE
            if size < 0 or index >= MAX_CHUNKS:
                raise AuthenticationError
            out = outbox.buffer()[:size]
            chunker.open_into(index, last, stored, out)
            outbox.ship(out)  # only now, with the tag verified
            written += size
        outbox.finish()
    finally:
        outbox.abort()
    return written
