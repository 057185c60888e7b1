"""Manifests: SHA-256 of a chunked object's header and of every stored chunk.

A sync layer compares manifests to upload or fetch only the chunks the other
side lacks, and to resume an interrupted transfer chunk by chunk.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from strongroom.cipher_suite import ReadableBuffer
from strongroom.errors import IntegrityError, UsageError
from strongroom.formats._layout import (
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    TAG_SIZE,
    body_layout,
    parse_header,
    read_header,
)
from strongroom.formats._stream import ByteSource, full_chunks

__all__ = ["MANIFEST_MAGIC", "Manifest", "manifest_of"]

MANIFEST_MAGIC = b"SRmf"
_MANIFEST_VERSION = 1
#: magic | version | chunk count u32 | chunk size u32 | total size u64 | header SHA-256
_MANIFEST_HEAD = struct.Struct(">4sBIIQ32s")
_SHA256_SIZE = 32


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
        layout = body_layout(self.total_size - HEADER_SIZE, self.chunk_size)
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
    raw = read_header(source)
    chunk_size = parse_header(raw).chunk_size
    hashes: list[bytes] = []
    total = HEADER_SIZE
    for stored, _last in full_chunks(source, chunk_size + TAG_SIZE):
        if len(stored) < TAG_SIZE:
            raise IntegrityError("truncated strongroom chunked object")
        hashes.append(hashlib.sha256(stored).digest())
        total += len(stored)
    return Manifest(hashlib.sha256(raw).digest(), tuple(hashes), chunk_size, total)
