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
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self, overload

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer
from strongroom.errors import AuthenticationError, IntegrityError, UsageError
from strongroom.formats._derive import (
    COMMITMENT_SIZE,
    PREFIX_SIZE,
    SALT_SIZE,
    KeyFor,
    derive,
    new_salt,
    nonce_size_chunked,
    open_object_key,
    pack_prefix,
    parse_prefix,
    peek_key_version,
)
from strongroom.formats.context import Context

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


class ByteSource(Protocol):
    """What the streaming functions read from: a binary file, a pipe, ``sys.stdin.buffer``.

    ``readinto`` is used when present, so files are read without copies.
    """

    def read(self, size: int = -1, /) -> bytes | None: ...


class SeekableByteSource(ByteSource, Protocol):
    """What :class:`ChunkedReader` reads from: a seekable binary file."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...
    def seekable(self) -> bool: ...


class ByteSink(Protocol):
    """What ciphertext and plaintext are written to; it must take all it is given.

    A ``write`` that returns a count short of the data is called again with
    the rest; ``None`` is taken to mean everything was written.
    """

    def write(self, data: memoryview, /) -> int | None: ...


MAGIC = b"SRck"
_KIND = b"chunked"
#: chunk size (u32 BE) | salt | commitment, after the 11-byte prefix.
_HEADER_REST = struct.Struct(f">I{SALT_SIZE}s{COMMITMENT_SIZE}s")
HEADER_SIZE = PREFIX_SIZE + _HEADER_REST.size
#: The chunked format takes suites with 16-byte tags only (all built-in ones),
#: so that chunk boundaries follow from the header without knowing the suite.
TAG_SIZE = 16
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 64 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNKS = 1 << 32
_NONCE_TAIL = struct.Struct(">IB")
#: From this chunk size on, chunks are written (and hashed for the manifest)
#: on worker threads while the next one is encrypted or decrypted: file I/O
#: and hashlib release the GIL.  Smaller chunks are not worth a thread hop.
_THREADED_MIN = 256 << 10
#: Output buffers in rotation when writing behind.
_DEPTH = 3

MANIFEST_MAGIC = b"SRmf"
_MANIFEST_VERSION = 1
#: magic | version | chunk count u32 | chunk size u32 | total size u64 | header SHA-256
_MANIFEST_HEAD = struct.Struct(">4sBIIQ32s")
_SHA256_SIZE = 32


# manifest


@dataclass(frozen=True, slots=True)
class Manifest:
    """SHA-256 of a chunked object's header and of each stored chunk (``ciphertext || tag``).

    Computed from ciphertext alone, so a sync client or server can tell
    which chunks it already holds without any key.  ``chunk_size`` is the
    header's plaintext chunk size; ``total_size`` is the length of the whole
    stored object, header included.

    :raises strongroom.errors.IntegrityError: the fields are inconsistent.
    """

    header_sha256: bytes
    chunk_sha256: tuple[bytes, ...]
    chunk_size: int
    total_size: int

    def __post_init__(self) -> None:
        digests = (self.header_sha256, *self.chunk_sha256)
        if any(len(digest) != _SHA256_SIZE for digest in digests):
            raise IntegrityError("a manifest holds 32-byte SHA-256 digests")
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise IntegrityError("manifest chunk size out of range")
        layout = _layout(self.total_size - HEADER_SIZE, self.chunk_size)
        if layout is None or layout[0] != len(self.chunk_sha256):
            raise IntegrityError("manifest chunk count does not match its total size")

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_sha256)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Offset and length of stored chunk ``index`` within the object.

        :raises IndexError: no such chunk.
        """
        if not 0 <= index < self.chunk_count:
            raise IndexError("chunk index out of range")
        stride = self.chunk_size + TAG_SIZE
        offset = HEADER_SIZE + index * stride
        return offset, min(stride, self.total_size - offset)

    def to_bytes(self) -> bytes:
        """The binary layout of ``docs/formats.md``: 53 bytes, then 32 per chunk.

        :raises strongroom.errors.UsageError: more than 2**32 - 1 chunks.
        """
        if self.chunk_count > 0xFFFF_FFFF:
            raise UsageError("a manifest holds at most 2**32 - 1 chunks")
        head = _MANIFEST_HEAD.pack(
            MANIFEST_MAGIC,
            _MANIFEST_VERSION,
            self.chunk_count,
            self.chunk_size,
            self.total_size,
            self.header_sha256,
        )
        return head + b"".join(self.chunk_sha256)

    @classmethod
    def from_bytes(cls, data: ReadableBuffer) -> Manifest:
        """Parse :meth:`to_bytes` output.

        :raises strongroom.errors.IntegrityError: not a manifest, an unknown
            version, a wrong length, or inconsistent fields.
        """
        view = memoryview(data).cast("B")
        if len(view) < _MANIFEST_HEAD.size or bytes(view[:4]) != MANIFEST_MAGIC:
            raise IntegrityError("not a strongroom manifest")
        _, version, count, chunk_size, total_size, header_sha256 = _MANIFEST_HEAD.unpack_from(view)
        if version != _MANIFEST_VERSION:
            raise IntegrityError(f"unsupported manifest version {version}")
        if len(view) != _MANIFEST_HEAD.size + count * _SHA256_SIZE:
            raise IntegrityError("manifest length does not match its chunk count")
        hashes = view[_MANIFEST_HEAD.size :]
        return cls(
            header_sha256=header_sha256,
            chunk_sha256=tuple(
                bytes(hashes[start : start + _SHA256_SIZE])
                for start in range(0, len(hashes), _SHA256_SIZE)
            ),
            chunk_size=chunk_size,
            total_size=total_size,
        )


def manifest_of(source: ByteSource) -> Manifest:
    """Compute the manifest of the chunked object read from ``source`` (to its end).

    Needs no key and authenticates nothing: it describes the bytes as stored.

    :raises strongroom.errors.IntegrityError: ``source`` does not hold a
        complete chunked object of a known version.
    """
    raw = _read_header(source)
    chunk_size = _parse_header(raw).chunk_size
    hashes: list[bytes] = []
    total = HEADER_SIZE
    for stored, _last in _full_chunks(source, chunk_size + TAG_SIZE):
        if len(stored) < TAG_SIZE:
            raise IntegrityError("truncated strongroom chunked object")
        hashes.append(hashlib.sha256(stored).digest())
        total += len(stored)
    return Manifest(hashlib.sha256(raw).digest(), tuple(hashes), chunk_size, total)


# encryption


class ChunkedWriter:
    """Encrypt a stream into ``sink``: ``write()`` as often as needed, then ``close()``.

    The header is written at once; chunks follow as soon as the writer knows
    they are not the last (it holds one chunk back).  ``close()`` writes the
    last chunk and returns the :class:`Manifest`.  Used as a context manager,
    an exception leaves the object unfinished (no last chunk): the caller
    discards the sink.  The sink is not closed.

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
        _salt: bytes | None = None,
        _hashing: bool = True,
    ) -> None:
        _check_chunk_size(chunk_size)
        if suite.tag_size != TAG_SIZE:
            raise UsageError(f"the chunked format needs a suite with {TAG_SIZE}-byte tags")
        salt = new_salt(_salt)
        derived = derive(suite, key, salt, _KIND, nonce_size_chunked(suite))
        header = pack_prefix(MAGIC, suite, key_version) + _HEADER_REST.pack(
            chunk_size, salt, derived.commitment
        )
        self._chunker = _Chunker(derived.aead, derived.nonce, header + context.encode())
        self._chunk_size = chunk_size
        self._header_sha256 = hashlib.sha256(header).digest()
        self._buffer: memoryview | None = None  # allocated on the first buffered write
        self._fill = 0
        self._index = 0
        self._total = HEADER_SIZE
        self._state = "open"
        self._manifest: Manifest | None = None
        _write_all(sink, memoryview(header))
        self._outbox = _Outbox(sink, chunk_size + TAG_SIZE, hashing=_hashing)

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

    def close(self) -> Manifest:
        """Write the last chunk and return the manifest; closing twice returns it again.

        :raises strongroom.errors.UsageError: the writer failed or was aborted.
        """
        if self._manifest is not None:
            return self._manifest
        self._check_open()
        try:
            self._emit(self._held(), last=True)
            manifest = self._finish()
        except BaseException:
            self.abort()
            raise
        if manifest is None:  # only encrypt_stream(manifest=False) skips hashing
            raise UsageError("this writer does not compute a manifest")
        return manifest

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
    manifest: Literal[True] = ...,
    _salt: bytes | None = ...,
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
    manifest: bool,
    _salt: bytes | None = ...,
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
    manifest: bool = True,
    _salt: bytes | None = None,
) -> Manifest | None:
    """Encrypt everything ``source`` holds (to EOF) into ``sink`` as one chunked object.

    ``source`` need not be seekable.  Returns the :class:`Manifest`, or
    ``None`` with ``manifest=False``, which saves hashing every chunk (a
    third of the CPU time); :func:`manifest_of` can compute it later from
    the ciphertext.  On an exception, ``sink`` holds an unfinished object
    that the caller discards.

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
        _salt=_salt,
        _hashing=manifest,
    )
    try:
        for plaintext, last in _full_chunks(source, chunk_size):
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
        raw = _read_header(source)
        header = _parse_header(raw)
        aead, prefix = _open_header(header, key_for)
        self._chunker = _Chunker(aead, prefix, raw + context.encode())
        self._key_version = header.key_version
        self._chunk_size = header.chunk_size
        self._stride = header.chunk_size + TAG_SIZE
        end = source.seek(0, os.SEEK_END)
        layout = _layout(end - self._base - HEADER_SIZE, header.chunk_size)
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
        if _readinto_full(self._source, view) != stored:  # the source shrank under us
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
    raw = _read_header(source)
    header = _parse_header(raw)
    aead, prefix = _open_header(header, key_for)
    chunker = _Chunker(aead, prefix, raw + context.encode())
    outbox = _Outbox(sink, header.chunk_size, hashing=False)
    written = 0
    try:
        chunks = _full_chunks(source, header.chunk_size + TAG_SIZE)
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


# shared


class _Outbox:
    """Output buffers whose contents are written to the sink (and hashed) in order.

    ``buffer()`` hands out the next free buffer, ``ship(view)`` sends the
    filled part of it.  From ``_THREADED_MIN`` bytes on, writing and hashing
    happen on two worker threads while the caller fills the next buffer;
    writes keep their order (one writer thread).  ``abort()`` waits for
    every write already shipped, so nothing reaches the sink afterwards.
    """

    def __init__(self, sink: ByteSink, size: int, *, hashing: bool) -> None:
        self._sink = sink
        self._hashing = hashing
        threaded = size >= _THREADED_MIN and (os.cpu_count() or 1) > 1
        self._buffers = [memoryview(bytearray(size)) for _ in range(_DEPTH if threaded else 1)]
        self._turn = 0
        self._broken = False
        self._digests: list[bytes] = []
        self._jobs: deque[tuple[Future[None], Future[bytes] | None]] = deque()
        self._writer: ThreadPoolExecutor | None = None
        self._hasher: ThreadPoolExecutor | None = None
        if threaded:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="strongroom-write")
            if hashing:
                self._hasher = ThreadPoolExecutor(1, thread_name_prefix="strongroom-hash")

    def buffer(self) -> memoryview:
        if len(self._jobs) == len(self._buffers):  # the oldest job reads this buffer
            self._settle_oldest()
        return self._buffers[self._turn]

    def ship(self, view: memoryview) -> None:
        if self._writer is None:
            _write_all(self._sink, view)
            if self._hashing:
                self._digests.append(_sha256(view))
        else:
            hashed = None if self._hasher is None else self._hasher.submit(_sha256, view)
            self._jobs.append((self._writer.submit(self._write_behind, view), hashed))
        self._turn = (self._turn + 1) % len(self._buffers)

    def finish(self) -> list[bytes] | None:
        """Wait for every write and hash; the digests in order, if hashing.

        Raises what a write raised.
        """
        while self._jobs:
            self._settle_oldest()
        self.abort()
        return self._digests if self._hashing else None

    def abort(self) -> None:
        for executor in (self._writer, self._hasher):
            if executor is not None:
                executor.shutdown(wait=True)
        self._writer = self._hasher = None
        self._jobs.clear()

    def _write_behind(self, view: memoryview) -> None:
        if self._broken:  # an earlier write failed: leave no gap-filled output behind
            return
        try:
            _write_all(self._sink, view)
        except BaseException:
            self._broken = True
            raise

    def _settle_oldest(self) -> None:
        written, hashed = self._jobs.popleft()
        written.result()
        if hashed is not None:
            self._digests.append(hashed.result())


class _Chunker:
    """One object's AEAD, nonce prefix and associated data."""

    __slots__ = ("_aad", "_aead", "_prefix")

    def __init__(self, aead: KeyedAead, prefix: bytes, aad: bytes) -> None:
        self._aead = aead
        self._prefix = prefix
        self._aad = aad

    def seal_into(self, index: int, last: bool, plaintext: memoryview, out: memoryview) -> None:
        nonce = self._prefix + _NONCE_TAIL.pack(index, last)
        self._aead.encrypt_into(nonce, plaintext, self._aad, out)

    def open_into(self, index: int, last: bool, stored: memoryview, out: memoryview) -> None:
        nonce = self._prefix + _NONCE_TAIL.pack(index, last)
        self._aead.decrypt_into(nonce, stored, self._aad, out)


@dataclass(frozen=True, slots=True)
class _Header:
    suite_code: int
    key_version: int
    chunk_size: int
    salt: bytes
    commitment: bytes


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise UsageError(f"chunk size must be from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")


def _read_header(source: ByteSource) -> bytes:
    raw = bytearray(HEADER_SIZE)
    size = _readinto_full(source, memoryview(raw))
    return bytes(raw[:size])


def _parse_header(raw: bytes) -> _Header:
    suite_code, key_version = parse_prefix(raw, MAGIC)
    if len(raw) < HEADER_SIZE:
        raise IntegrityError("truncated strongroom chunked object")
    chunk_size, salt, commitment = _HEADER_REST.unpack_from(raw, PREFIX_SIZE)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError("corrupt strongroom chunked header: chunk size out of range")
    return _Header(suite_code, key_version, chunk_size, salt, commitment)


def _open_header(header: _Header, key_for: KeyFor) -> tuple[KeyedAead, bytes]:
    derived = open_object_key(
        key_for,
        header.suite_code,
        header.key_version,
        header.salt,
        header.commitment,
        kind=_KIND,
        nonce_size=nonce_size_chunked,
    )
    if derived.tag_size != TAG_SIZE:
        raise UsageError(f"the chunked format needs a suite with {TAG_SIZE}-byte tags")
    return derived.aead, derived.nonce


def _layout(body_size: int, chunk_size: int) -> tuple[int, int] | None:
    """``(chunk count, plaintext size)`` of a body, or ``None`` if no object has that size."""
    stride = chunk_size + TAG_SIZE
    full, rest = divmod(body_size, stride)
    if body_size <= 0 or 0 < rest < TAG_SIZE:
        return None
    count = full + (rest > 0)
    if count > MAX_CHUNKS:
        return None
    return count, body_size - count * TAG_SIZE


def _full_chunks(source: ByteSource, size: int) -> Iterator[tuple[memoryview, bool]]:
    """Read ``source`` to EOF in pieces of ``size`` bytes, telling which piece is last.

    One piece is read ahead into a second buffer.  A yielded view is valid
    until the next step; an empty source yields one empty last piece.
    """
    current, ahead = memoryview(bytearray(size)), memoryview(bytearray(size))
    filled = _readinto_full(source, current)
    while True:
        if filled < size:
            yield current[:filled], True
            return
        next_filled = _readinto_full(source, ahead)
        if next_filled == 0:
            yield current, True
            return
        yield current, False
        current, ahead, filled = ahead, current, next_filled


def _readinto_full(source: ByteSource, view: memoryview) -> int:
    """Fill ``view`` from ``source`` until it is full or at EOF; return the count."""
    total, size = 0, len(view)
    readinto = getattr(source, "readinto", None)
    while total < size:
        if readinto is not None:
            count = readinto(view[total:])
        else:
            data = source.read(size - total)
            count = None
            if data is not None:
                count = len(data)
                view[total : total + count] = data
        if count is None:
            raise UsageError("non-blocking sources are not supported")
        if count == 0:
            break
        total += count
    return total


def _write_all(sink: ByteSink, view: memoryview) -> None:
    data = view
    while data:
        written = sink.write(data)
        if written is None or written >= len(data):  # None: a writer that reports nothing
            return
        data = data[written:]


def _sha256(data: memoryview) -> bytes:
    return hashlib.sha256(data).digest()
