"""The sync protocol's bodies (MessagePack through msgspec), its errors, and path segments.

``docs/sync-protocol.md`` is the specification; this module is its wire
form on the server.  Every decode is strict: a missing field, a field of
another type or an unknown field is ``malformed`` (400).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.responses import Response

__all__ = [
    "MSGPACK",
    "ChallengeIn",
    "ChangeIn",
    "CommitIn",
    "Malformed",
    "PushIn",
    "UploadIn",
    "answer",
    "decode",
    "number",
    "problem",
    "segment",
]

MSGPACK = "application/msgpack"


class Malformed(Exception):
    """A request the protocol cannot read: answered 400 ``malformed``."""


class ChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    value: bytes | None
    base_seq: int | None = None


class PushIn(msgspec.Struct, forbid_unknown_fields=True):
    changes: list[ChangeIn]


class UploadIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    manifest: bytes
    chunk_hashes: list[bytes]


class CommitIn(msgspec.Struct, forbid_unknown_fields=True):
    base_seq: int | None = None


class ChallengeIn(msgspec.Struct, forbid_unknown_fields=True):
    operation: str


_ENCODER = msgspec.msgpack.Encoder()


def decode(body: bytes, kind: type[Any]) -> Any:
    """``body`` as a ``kind`` struct.

    :raises Malformed: it is not MessagePack of that shape.
    """
    try:
        return msgspec.msgpack.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Malformed from None


def answer(content: Any, status: int = 200) -> Response:
    """A MessagePack answer."""
    return Response(_ENCODER.encode(content), status, media_type=MSGPACK)


def problem(status: int, code: str) -> Response:
    """An error answer: ``{"error": code}``."""
    return answer({"error": code}, status)


def segment(raw: str) -> str:
    """One percent-encoded path segment, decoded as UTF-8.

    :raises Malformed: it is empty, or its escapes are not UTF-8.
    """
    try:
        text = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Malformed from None
    if not text:
        raise Malformed
    return text


def number(raw: str) -> int:
    """A non-negative decimal integer from a path or query (at most 18 digits).

    :raises Malformed: it is anything else.
    """
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Malformed
    return int(raw)
