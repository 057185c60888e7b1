"""Streaming plumbing of the chunked format: sources, sinks, read-ahead, write-behind."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from strongroom.errors import UsageError


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


#: From this chunk size on, chunks are written (and hashed for the manifest)
#: on worker threads while the next one is encrypted or decrypted: file I/O
#: and hashlib release the GIL.  Smaller chunks are not worth a thread hop.
THREADED_MIN = 256 << 10
#: Output buffers in rotation when writing behind.
DEPTH = 3


class Outbox:
    """Output buffers whose contents are written to the sink (and hashed) in order.

    ``buffer()`` hands out the next free buffer, ``ship(view)`` sends the
    filled part of it.  From ``THREADED_MIN`` bytes on, writing and hashing
    happen on two worker threads while the caller fills the next buffer;
    writes keep their order (one writer thread).  ``abort()`` waits for
    every write already shipped, so nothing reaches the sink afterwards.
    """

    def __init__(self, sink: ByteSink, size: int, *, hashing: bool) -> None:
        self._sink = sink
        self._hashing = hashing
        threaded = size >= THREADED_MIN and (os.cpu_count() or 1) > 1
        self._buffers = [memoryview(bytearray(size)) for _ in range(DEPTH if threaded else 1)]
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
            write_all(self._sink, view)
            if self._hashing:
                self._digests.append(sha256(view))
        else:
            hashed = None if self._hasher is None else self._hasher.submit(sha256, view)
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
            write_all(self._sink, view)
        except BaseException:
            self._broken = True
            raise

    def _settle_oldest(self) -> None:
        written, hashed = self._jobs.popleft()
        written.result()
        if hashed is not None:
            self._digests.append(hashed.result())


def full_chunks(source: ByteSource, size: int) -> Iterator[tuple[memoryview, bool]]:
    """Read ``source`` to EOF in pieces of ``size`` bytes, telling which piece is last.

    One piece is read ahead into a second buffer.  A yielded view is valid
    until the next step; an empty source yields one empty last piece.
    """
    current, ahead = memoryview(bytearray(size)), memoryview(bytearray(size))
    filled = readinto_full(source, current)
    while True:
        if filled < size:
            yield current[:filled], True
            return
        next_filled = readinto_full(source, ahead)
        if next_filled == 0:
            yield current, True
            return
        yield current, False
        current, ahead, filled = ahead, current, next_filled


def readinto_full(source: ByteSource, view: memoryview) -> int:
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


def write_all(sink: ByteSink, view: memoryview) -> None:
    data = view
    while data:
        written = sink.write(data)
        if written is None or written >= len(data):  # None: a writer that reports nothing
            return
        data = data[written:]


def sha256(data: memoryview) -> bytes:
    return hashlib.sha256(data).digest()
