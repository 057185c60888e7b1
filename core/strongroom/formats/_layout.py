"""The chunked format's header, chunk layout and per-chunk sealing."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from strongroom.cipher_suite import KeyedAead
from strongroom.errors import IntegrityError, UsageError
from strongroom.formats._derive import (
    COMMITMENT_SIZE,
    PREFIX_SIZE,
    SALT_SIZE,
    KeyFor,
    nonce_size_chunked,
    open_object_key,
    parse_prefix,
)
from strongroom.formats._stream import ByteSource, readinto_full

MAGIC = b"SRck"
KIND = b"chunked"
#: chunk size (u32 BE) | salt | commitment, after the 11-byte prefix.
HEADER_REST = struct.Struct(f">I{SALT_SIZE}s{COMMITMENT_SIZE}s")
HEADER_SIZE = PREFIX_SIZE + HEADER_REST.size
#: The chunked format takes suites with 16-byte tags only (all built-in ones),
#: so that chunk boundaries follow from the header without knowing the suite.
TAG_SIZE = 16
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 64 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNKS = 1 << 32
NONCE_TAIL = struct.Struct(">IB")


class Chunker:
    """One object's AEAD, nonce prefix and associated data."""

    __slots__ = ("_aad", "_aead", "_prefix")

    def __init__(self, aead: KeyedAead, prefix: bytes, aad: bytes) -> None:
        self._aead = aead
        self._prefix = prefix
        self._aad = aad

    def seal_into(self, index: int, last: bool, plaintext: memoryview, out: memoryview) -> None:
        nonce = self._prefix + NONCE_TAIL.pack(index, last)
        self._aead.encrypt_into(nonce, plaintext, self._aad, out)

    def open_into(self, index: int, last: bool, stored: memoryview, out: memoryview) -> None:
        nonce = self._prefix + NONCE_TAIL.pack(index, last)
        self._aead.decrypt_into(nonce, stored, self._aad, out)


@dataclass(frozen=True, slots=True)
class Header:
    suite_code: int
    key_version: int
    chunk_size: int
    salt: bytes
    commitment: bytes


def check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise UsageError(f"chunk size must be from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")


def read_header(source: ByteSource) -> bytes:
    raw = bytearray(HEADER_SIZE)
    size = readinto_full(source, memoryview(raw))
    return bytes(raw[:size])


def parse_header(raw: bytes) -> Header:
    suite_code, key_version = parse_prefix(raw, MAGIC)
    if len(raw) < HEADER_SIZE:
        raise IntegrityError("truncated strongroom chunked object")
    chunk_size, salt, commitment = HEADER_REST.unpack_from(raw, PREFIX_SIZE)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError("corrupt strongroom chunked header: chunk size out of range")
    return Header(suite_code, key_version, chunk_size, salt, commitment)


def open_header(header: Header, key_for: KeyFor) -> tuple[KeyedAead, bytes]:
    derived = open_object_key(
        key_for,
        header.suite_code,
        header.key_version,
        header.salt,
        header.commitment,
        kind=KIND,
        nonce_size=nonce_size_chunked,
    )
    if derived.tag_size != TAG_SIZE:
        raise UsageError(f"the chunked format needs a suite with {TAG_SIZE}-byte tags")
    return derived.aead, derived.nonce


def body_layout(body_size: int, chunk_size: int) -> tuple[int, int] | None:
    """``(chunk count, plaintext size)`` of a body, or ``None`` if no object has that size."""
    stride = chunk_size + TAG_SIZE
    full, rest = divmod(body_size, stride)
    if body_size <= 0 or 0 < rest < TAG_SIZE:
        return None
    count = full + (rest > 0)
    if count > MAX_CHUNKS:
        return None
    return count, body_size - count * TAG_SIZE
