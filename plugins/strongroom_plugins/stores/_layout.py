"""Where the ``files`` store keeps things, and how a record's plaintext is framed.

Only names and framing live here; nothing in this module sees a key.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from strongroom.errors import IntegrityError, UsageError

__all__ = [
    "BLOBS",
    "KEY_FILE_SUFFIX",
    "LOCK_FILE",
    "RECORDS",
    "StoredObject",
    "encode_key",
    "frame_record",
    "is_name",
    "orphan_key_files",
    "scan",
    "scan_blob_names",
    "scan_names",
    "split_record",
]

RECORDS = "records"
BLOBS = "blobs"
KEY_FILE_SUFFIX = ".name"
LOCK_FILE = ".lock"

_NAME = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_KEY_LENGTH = struct.Struct(">H")
_MAX_KEY = 0xFFFF


@dataclass(frozen=True)
class StoredObject:
    """One stored value on disk: a record, or a blob with its key file.

    ``location`` is the file's path as a string; :attr:`path` makes the
    ``Path`` only when asked, since a listing peeks thousands of headers by
    the string alone.
    """

    #: The 64-hex name: HMAC-SHA256 of the key under the store's name key.
    name: str
    location: str
    is_blob: bool

    @classmethod
    def record(cls, root: Path, name: str) -> StoredObject:
        return cls(name, f"{root}/{RECORDS}/{name[:2]}/{name}", is_blob=False)

    @classmethod
    def blob(cls, root: Path, name: str) -> StoredObject:
        return cls(name, f"{root}/{BLOBS}/{name[:2]}/{name}", is_blob=True)

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def key_file(self) -> Path:
        """A blob's sealed key file, ``<name>.name`` beside it."""
        return Path(self.location + KEY_FILE_SUFFIX)

    @property
    def context_record(self) -> str:
        """The ``record`` field of the context this object's ciphertext is bound to."""
        return f"blob:{self.name}" if self.is_blob else self.name

    @property
    def key_file_context_record(self) -> str:
        return f"blob-name:{self.name}"


def _shards(base: Path) -> list[Path]:
    try:
        return sorted(
            Path(entry.path)
            for entry in os.scandir(base)
            if entry.is_dir(follow_symlinks=False) and _SHARD.fullmatch(entry.name)
        )
    except FileNotFoundError:
        return []


def _names(shard: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(shard))
    except FileNotFoundError:  # removed by hand meanwhile
        return []


def scan(root: Path) -> list[StoredObject]:
    """Every record and blob under ``root``, skipping temporary and unknown files."""
    found: list[StoredObject] = []
    for kind, is_blob in ((RECORDS, False), (BLOBS, True)):
        for shard in _shards(root / kind):
            found.extend(
                StoredObject(name, f"{shard}/{name}", is_blob)
                for name in _names(shard)
                if _NAME.fullmatch(name) and name.startswith(shard.name)
            )
    return found


def scan_names(root: Path) -> dict[str, bool]:
    """Every object's name and whether it is a blob; a record beside a blob wins.

    What :func:`scan` finds, without a path per object (listing's hot path).
    Names are only checked for length and shard here: :func:`is_name` is
    for those a listing has to open.
    """
    found: dict[str, bool] = {}
    for kind, is_blob in ((BLOBS, True), (RECORDS, False)):  # records last: they win
        for shard in _shards(root / kind):
            prefix = shard.name
            try:
                entries = os.listdir(shard)
            except FileNotFoundError:  # removed by hand meanwhile
                continue
            found.update(
                (name, is_blob) for name in entries if len(name) == 64 and name[:2] == prefix
            )
    return found


def is_name(name: str) -> bool:
    """Whether ``name`` is a 64-hex object name."""
    return _NAME.fullmatch(name) is not None


def scan_blob_names(root: Path) -> set[str]:
    """The 64-hex names of every blob, and of every blob key file."""
    found: set[str] = set()
    for shard in _shards(root / BLOBS):
        found.update(name.removesuffix(KEY_FILE_SUFFIX) for name in _names(shard))
    return found


def orphan_key_files(root: Path) -> list[Path]:
    """Blob key files whose blob does not exist (a crash between two renames)."""
    orphans: list[Path] = []
    for shard in _shards(root / BLOBS):
        names = set(_names(shard))
        for name in names:
            blob = name.removesuffix(KEY_FILE_SUFFIX)
            if name.endswith(KEY_FILE_SUFFIX) and _NAME.fullmatch(blob) and blob not in names:
                orphans.append(shard / name)
    return orphans


def encode_key(key: str) -> bytes:
    """A record key's UTF-8.

    :raises strongroom.errors.UsageError: not a ``str``, not encodable, or
        longer than 65535 bytes.
    """
    if not isinstance(key, str):
        raise UsageError(f"a record key is a str, not {type(key).__name__}")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("a record key must be encodable as UTF-8") from None
    if len(encoded) > _MAX_KEY:
        raise UsageError(f"a record key is at most {_MAX_KEY} bytes of UTF-8")
    return encoded


def frame_record(encoded_key: bytes, value: bytes) -> bytes:
    """A record's plaintext: u16 BE key length, the key's UTF-8, the value."""
    return _KEY_LENGTH.pack(len(encoded_key)) + encoded_key + bytes(value)


def split_record(plaintext: bytes) -> tuple[str, bytes, bytes]:
    """``(key, key's UTF-8, value)`` from a record's plaintext.

    :raises strongroom.errors.IntegrityError: it is not framed as
        :func:`frame_record` frames it.
    """
    if len(plaintext) < _KEY_LENGTH.size:
        raise IntegrityError("a record's plaintext is malformed")
    (length,) = _KEY_LENGTH.unpack_from(plaintext)
    end = _KEY_LENGTH.size + length
    encoded = plaintext[_KEY_LENGTH.size : end]
    if len(encoded) != length:
        raise IntegrityError("a record's plaintext is malformed")
    try:
        return encoded.decode("utf-8"), encoded, plaintext[end:]
    except UnicodeDecodeError:
        raise IntegrityError("a record's plaintext is malformed") from None
