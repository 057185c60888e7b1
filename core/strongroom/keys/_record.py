"""The key metadata record: one JSON file per account, replaced atomically.

It holds only wrapped material: the master key wrapped by each provider,
and every data key version wrapped under the master key.  A crash at any
point leaves the previous record or the next one (see ``strongroom._fs``).
``docs/formats.md`` documents the layout.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from strongroom._fs import atomic_write
from strongroom.errors import IntegrityError

RECORD_FILE = "keys.json"
FORMAT = "strongroom-keys"
FORMAT_VERSION = 1


def _decode_blob(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("expected base64") from None
    return value


def _encode_blob(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


#: Bytes kept as standard base64 in the JSON.
Blob = Annotated[
    bytes, BeforeValidator(_decode_blob), PlainSerializer(_encode_blob, return_type=str)
]


class KeyState(StrEnum):
    """Where a data key version is in its life."""

    #: Encrypts (if primary) and decrypts.
    ACTIVE = "active"
    #: Still exists but no longer decrypts; can be reactivated by no one.
    RETIRED = "retired"
    #: Erased: what it protected is crypto-shredded.
    DESTROYED = "destroyed"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KeyVersion(_Model):
    """One version of a data keyset."""

    suite: str
    state: KeyState = KeyState.ACTIVE
    #: Master key version this version is wrapped under.
    master_version: int
    #: The data key sealed under the master key; ``None`` once destroyed.
    wrapped: Blob | None
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class Keyset(_Model):
    """All versions of one purpose's data key; ``primary`` encrypts new data."""

    primary: int
    versions: dict[int, KeyVersion]


class ProviderWrap(_Model):
    """The master key as wrapped by one configured provider."""

    #: Backend name of the provider (``passphrase``, ``keyring``...), for status.
    use: str
    blob: Blob


class KeyRecord(_Model):
    """An account's whole key hierarchy, wrapped."""

    format: str = FORMAT
    version: int = FORMAT_VERSION
    account: str
    #: Incremented on every write; lets readers notice a concurrent change.
    generation: int = 0
    master_version: int = 1
    #: Provider config table name (``key_providers.<name>``) -> wrap.
    wraps: dict[str, ProviderWrap] = Field(default_factory=dict)
    keysets: dict[str, Keyset] = Field(default_factory=dict)


def load_record(directory: Path) -> KeyRecord:
    """Read and validate the account's record.

    :raises FileNotFoundError: the account has no record.
    :raises IntegrityError: the record is not valid JSON of this format.
    """
    path = directory / RECORD_FILE
    raw = path.read_bytes()
    try:
        record = KeyRecord.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        raise IntegrityError(f"{path}: the key record is corrupt") from None
    if record.format != FORMAT or record.version != FORMAT_VERSION:
        raise IntegrityError(f"{path}: unsupported key record format {record.version}")
    return record


def save_record(directory: Path, record: KeyRecord) -> None:
    """Write ``record`` atomically with its generation advanced."""
    record.generation += 1
    text = record.model_dump_json(indent=1)
    atomic_write(directory / RECORD_FILE, text.encode())
