"""The key metadata record: one JSON file per account, replaced atomically.

It holds only wrapped material: the master key wrapped by each provider,
and every data key version wrapped under the master key.  A crash at any
point leaves the previous record or the next one (see ``strongroom.durable``).

Everything in it but the provider wraps is authenticated by ``mac``, an
HMAC-SHA256 under a key derived from the master key, so states,
primaries, suites, floors, the generation and the set of keysets cannot be
edited by anyone without the master key.  The wraps are left out: each is
authenticated by its own provider, and changing one can only stop that
provider unlocking.  ``docs/formats.md`` documents the layout.
"""

from __future__ import annotations

import copy
import errno
import hmac
import json
import os
import stat
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import msgspec

from strongroom.durable import TEMP_SUFFIX, atomic_write
from strongroom.errors import IntegrityError, StoreError
from strongroom.secret import Secret

RECORD_FILE = "keys.json"
FORMAT = "strongroom-keys"
FORMAT_VERSION = 1
#: HKDF-SHA256 info of the record's MAC key (no salt, 32 bytes).
MAC_INFO = b"strongroom/v1/key-record-mac"
#: A record larger than this is refused as corrupt: it is never near it.
MAX_RECORD_SIZE = 16 << 20
#: Prepended to the canonical JSON before it is MACed.
MAC_LABEL = b"strongroom/key-record/v1\x00"


class KeyState(StrEnum):
    """Where a data key version is in its life."""

    #: Encrypts (if primary) and decrypts.
    ACTIVE = "active"
    #: Still exists but no longer decrypts; can be reactivated by no one.
    RETIRED = "retired"
    #: Erased: what it protected is crypto-shredded.
    DESTROYED = "destroyed"


class _Model(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Mutable, unknown fields refused; ``bytes`` are standard base64 in the JSON."""

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Validate JSON-decoded ``data`` (integer keys as strings, bytes as base64).

        :raises msgspec.ValidationError: ``data`` is not of this shape.
        """
        return msgspec.convert(data, type=cls, str_keys=True)

    def model_copy(self, *, deep: bool = False) -> Self:
        """A copy, sharing nothing with this one if ``deep``."""
        return copy.deepcopy(self) if deep else copy.copy(self)

    def to_json_data(self) -> dict[str, Any]:
        """Plain JSON data: fields in declaration order, integer keys as strings."""
        data: dict[str, Any] = msgspec.to_builtins(self, str_keys=True)
        return data


class KeyVersion(_Model, kw_only=True):
    """One version of a data keyset."""

    suite: str
    state: KeyState = KeyState.ACTIVE
    #: Master key version this version is wrapped under.
    master_version: int
    #: The data key sealed under the master key; ``None`` once destroyed.
    wrapped: bytes | None
    created: str = msgspec.field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


class Keyset(_Model, kw_only=True):
    """All versions of one purpose's data key; ``primary`` encrypts new data."""

    primary: int
    versions: dict[int, KeyVersion]
    #: Re-encryption floor: every object of this purpose is under this version
    #: or newer, so an object under an older one is a copy put back.  0: none.
    floor: int = 0


class ProviderWrap(_Model, kw_only=True):
    """The master key as wrapped by one configured provider."""

    #: Backend name of the provider (``passphrase``, ``keyring``...), for status.
    use: str
    blob: bytes


class KeyRecord(_Model, kw_only=True):
    """An account's whole key hierarchy, wrapped."""

    format: str = FORMAT
    version: int = FORMAT_VERSION
    account: str
    #: Incremented on every write; lets readers notice a concurrent change.
    generation: int = 0
    master_version: int = 1
    #: Provider config table name (``key_providers.<name>``) -> wrap.
    wraps: dict[str, ProviderWrap] = msgspec.field(default_factory=dict)
    keysets: dict[str, Keyset] = msgspec.field(default_factory=dict)
    #: HMAC-SHA256 of :func:`authenticated_bytes` under the master-derived key;
    #: ``None`` only while a wipe is under way.
    mac: bytes | None = None


def authenticated_bytes(record: KeyRecord) -> bytes:
    """What the MAC covers: a label, then canonical JSON of all but ``mac`` and ``wraps``.

    Canonical: keys sorted, no spaces, ASCII only, integers as JSON numbers
    and version numbers as string keys.
    """
    body = record.to_json_data()
    del body["mac"], body["wraps"]
    return MAC_LABEL + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def record_mac(record: KeyRecord, master: Secret) -> bytes:
    """The MAC of ``record`` under the key derived from ``master``."""
    from cryptography.hazmat.primitives import hashes  # off the cold path: after unlocking
    from cryptography.hazmat.primitives import hmac as crypto_hmac
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_INFO).derive(
        master.view()
    )
    mac = crypto_hmac.HMAC(mac_key, hashes.SHA256())
    mac.update(authenticated_bytes(record))
    return mac.finalize()


def check_mac(record: KeyRecord, master: Secret, where: Path) -> None:
    """:raises IntegrityError: ``record`` was changed by someone without the master key."""
    if record.mac is None:
        raise IntegrityError(
            f"{where / RECORD_FILE}: a wipe of this account did not finish; "
            "run 'strongroom wipe --yes' again"
        )
    if not hmac.compare_digest(record.mac, record_mac(record, master)):
        raise IntegrityError(
            f"{where / RECORD_FILE}: the key record was altered (its MAC does not verify); "
            "nothing in it was used"
        )


def load_record(directory: Path) -> KeyRecord:
    """Read and validate the account's record; the MAC is checked by the caller.

    :raises FileNotFoundError: the account has no record.
    :raises IntegrityError: the record is not valid JSON of this format.
    :raises StoreError: the record cannot be read (permissions, a directory).
    """
    path = directory / RECORD_FILE
    raw = _read_regular(path)
    try:
        record = KeyRecord.model_validate(json.loads(raw))
    except (ValueError, msgspec.ValidationError, RecursionError):
        raise IntegrityError(f"{path}: the key record is corrupt") from None
    if record.format != FORMAT or record.version != FORMAT_VERSION:
        raise IntegrityError(f"{path}: unsupported key record format {record.version}")
    return record


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path``, which must be a regular file (a FIFO would block the reader).

    :raises FileNotFoundError: it does not exist.
    :raises StoreError: it is not a regular file, or cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the key record ({exc.strerror})") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        reason = os.strerror(errno.EISDIR) if stat.S_ISDIR(mode) else "not a regular file"
        raise StoreError(f"{path}: cannot read the key record ({reason})")
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(MAX_RECORD_SIZE + 1)
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the key record ({exc.strerror})") from exc
    if len(raw) > MAX_RECORD_SIZE:
        raise IntegrityError(f"{path}: the key record is corrupt (far too large)")
    return raw


def _sweep_temporaries(directory: Path) -> None:
    """Remove what killed writers left: earlier versions of the record, destroyed keys and all.

    Only called under the record's lock, when no writer can be midway.
    """
    for stale in directory.glob(f".{RECORD_FILE}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def save_record(directory: Path, record: KeyRecord, master: Secret | None) -> None:
    """Write ``record`` atomically with its generation advanced, MACed under ``master``.

    ``master`` is ``None`` only for a wipe, which leaves the record unauthenticated.

    :raises StoreError: the record cannot be written; the previous one is intact.
    """
    record.generation += 1
    record.mac = None if master is None else record_mac(record, master)
    text = json.dumps(record.to_json_data(), indent=1, ensure_ascii=False)
    path = directory / RECORD_FILE
    try:
        _sweep_temporaries(directory)
        atomic_write(path, text.encode())
    except OSError as exc:
        raise StoreError(f"{path}: cannot write the key record ({exc.strerror})") from exc
