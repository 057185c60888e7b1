"""The sync protocol's bodies and paths, as a device reads and writes them.

Bodies are MessagePack maps (``docs/sync-protocol.md``); every answer is
decoded into a typed struct, so a malformed one is refused in one place.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal, TypeVar

import msgspec

from strongroom._outbox_record import describe_answer
from strongroom.errors import TransportError
from strongroom.transport import SyncResponse

__all__ = [
    "MSGPACK",
    "BlobAnswer",
    "ChangesAnswer",
    "CommitAnswer",
    "MissingAnswer",
    "PushAnswer",
    "PushResult",
    "UploadAnswer",
    "WireEntry",
    "account_path",
    "decode_answer",
    "encode",
    "quote",
]

#: The content type of every structured body.
MSGPACK = {"Content-Type": "application/msgpack"}

T = TypeVar("T")


class PushResult(msgspec.Struct, frozen=True):
    key: str
    seq: int
    conflict: bool


class PushAnswer(msgspec.Struct, frozen=True):
    results: list[PushResult]


class WireEntry(msgspec.Struct, frozen=True):
    key: str
    seq: int
    kind: Literal["record", "blob", "deleted"]
    value: bytes | None = None


class ChangesAnswer(msgspec.Struct, frozen=True):
    entries: list[WireEntry]
    next: int
    more: bool


class UploadAnswer(msgspec.Struct, frozen=True):
    upload: str
    missing: list[int]


class MissingAnswer(msgspec.Struct, frozen=True):
    missing: list[int]


class CommitAnswer(msgspec.Struct, frozen=True):
    key: str
    seq: int
    conflict: bool


class BlobAnswer(msgspec.Struct, frozen=True):
    seq: int
    manifest: bytes
    chunk_hashes: list[bytes]


def encode(body: object) -> bytes:
    return msgspec.msgpack.encode(body)


def quote(text: str) -> str:
    """Every byte of ``text``'s UTF-8 outside ``A-Z a-z 0-9 - . _ ~`` as ``%XX``."""
    return urllib.parse.quote(text, safe="")


def account_path(account: str, rest: str) -> str:
    return f"/v1/accounts/{quote(account)}/{rest}"


def decode_answer(response: SyncResponse, kind: type[T], *, status: int = 200) -> T:
    """``response``'s body as ``kind``.

    :raises strongroom.errors.TransportError: another status, or a malformed
        body (named by status and error code, never by its content).
    """
    if response.status != status:
        answer = describe_answer(response.status, response.body)
        raise TransportError(f"the sync server answered {answer}")
    try:
        return msgspec.msgpack.decode(response.body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise TransportError(f"the sync server's answer is not a valid {kind.__name__}") from None
