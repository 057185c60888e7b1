"""The record one queued operation is kept as, and the outbox's retry rules.

An operation is one record of the outbox's store under
``strongroom.outbox/<id>``: a MessagePack map (msgspec) that the store
seals like any other record.  Every change of state replaces that one
record, which a store does atomically, so a crash leaves the old state or
the new one.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from strongroom.errors import (
    ClockSkewError,
    RequestRefusedError,
    TransportError,
)

__all__ = [
    "Operation",
    "decode",
    "describe_answer",
    "encode",
    "is_retryable_error",
    "is_retryable_status",
]


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One queued operation: the request, its idempotency key and its retry state.

    Its repr names it and its state, never the body, headers or ``meta``.
    """

    #: Sorts in the order the operations were queued (queue time, then random).
    id: str
    #: 128 random bits in base64url, assigned at queue time; sent as ``Idempotency-Key``.
    idempotency_key: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Operations of one stream are sent strictly in queue order.
    stream: str | None = None
    #: Fetch a challenge token for this operation before each attempt.
    fresh_auth: bool = False
    #: Unix time it was queued.
    created: float = 0.0
    attempts: int = 0
    #: Unix time of the first attempt that got no success: it may have run on the server.
    first_attempt: float | None = None
    #: Unix time of the next attempt (full-jitter exponential backoff).
    next_at: float = 0.0
    #: The last failure, one line, without payload.
    error: str | None = None
    #: Why it is parked (``refused``, ``attempts``, ``stale``), or ``None`` while it waits.
    parked: str | None = None
    #: Sent although older than the server's idempotency retention: the caller said so.
    send_stale: bool = False
    #: What the caller keeps with the operation (the syncer's bookkeeping).
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        state = f"parked: {self.parked}" if self.parked else f"{self.attempts} attempts"
        stream = f", stream {self.stream!r}" if self.stream else ""
        return f"Operation({self.id}, {self.method} {self.path.partition('?')[0]}{stream}, {state})"


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Operation)


def encode(operation: Operation) -> bytes:
    return _ENCODER.encode(operation)


def decode(data: bytes) -> Operation:
    """:raises msgspec.DecodeError: not an operation record."""
    return _DECODER.decode(data)


#: Answers worth another attempt later: the server may take it then.
_RETRYABLE = frozenset({401, 408, 409, 425, 428, 429})
_CODE = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def is_retryable_status(status: int) -> bool:
    """Whether an answer with ``status`` leaves the operation to be tried again."""
    return status in _RETRYABLE or status >= 500


def is_retryable_error(exc: Exception) -> bool:
    """Whether ``exc`` from a send leaves the operation to be tried again."""
    if isinstance(exc, ClockSkewError):
        return True
    if isinstance(exc, RequestRefusedError):
        return exc.reason == "replay"
    return isinstance(exc, TransportError)


def describe_answer(status: int, body: bytes) -> str:
    """One line for an answer: its status and the server's error code, never its body."""
    code = None
    for loads in (msgspec.msgpack.decode, msgspec.json.decode):
        try:
            parsed = loads(body)
        except (msgspec.DecodeError, ValueError):
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            code = parsed["error"]
            break
    if code is not None and _CODE.fullmatch(code):
        return f"HTTP {status} ({code})"
    return f"HTTP {status}"
