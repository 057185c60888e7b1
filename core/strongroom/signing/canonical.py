"""The canonical strings that request and response signatures cover, as bytes.

Specified byte by byte in ``docs/formats.md`` ("Request signing").  The
target is normalised as RFC 3986 section 6.2.2 allows without changing its
meaning to any server: hex digits of escapes upper-cased, escapes of
unreserved characters decoded, and characters that may not appear raw
(space, non-ASCII as UTF-8, controls...) percent-encoded.  Reserved
characters and their escapes stay distinct: ``+`` is not ``%2B`` (a form
decoder reads one as a space), ``/`` is not ``%2F``.  A malformed escape,
a raw ``#`` and a ``.`` or ``..`` segment are refused.  The query's
parameters are sorted by name only, stably, so repeated parameters keep
their order (a framework's ``params["x"]`` takes one of them).

A target made only of unreserved characters, ``/`` and ``=``/``&`` takes a
fast path that skips the per-character work.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "REQUEST_LABEL",
    "RESPONSE_LABEL",
    "CanonicalError",
    "body_sha256",
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "canonical_response",
]

REQUEST_LABEL = "strongroom-request-v1"
RESPONSE_LABEL = "strongroom-response-v1"

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: RFC 3986 reserved characters but "#" (a fragment is never sent): kept as they are.
_KEPT = frozenset(b"!$&'()*+,;=:@/?[]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
#: Nothing to normalise: unreserved characters and the separators.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~=&]*")
_METHOD = re.compile(r"[A-Z]{1,20}")


class CanonicalError(ValueError):
    """A target, method or field that has no canonical form; the message says why."""


def _normalise(text: str) -> str:
    """``text`` with escapes normalised and every other unsafe byte escaped."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("a lone surrogate: not text that UTF-8 can carry") from None
    out: list[str] = []
    i, size = 0, len(data)
    while i < size:
        byte = data[i]
        if byte == 0x25:  # "%"
            pair = data[i + 1 : i + 3]
            if len(pair) != 2 or not (pair[0] in _HEX and pair[1] in _HEX):
                raise CanonicalError("a '%' not followed by two hex digits")
            value = int(pair, 16)
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            i += 3
            continue
        if byte == 0x23:  # "#"
            raise CanonicalError("a raw '#': a fragment is never sent")
        out.append(chr(byte) if byte in _UNRESERVED or byte in _KEPT else f"%{byte:02X}")
        i += 1
    return "".join(out)


def canonical_path(path: str) -> str:
    """The canonical form of a request path (absolute, without its query).

    :raises CanonicalError: not absolute, a malformed escape, a raw ``#``,
        or a ``.`` or ``..`` segment (raw or escaped).
    """
    if not path.startswith("/"):
        raise CanonicalError("a request path must start with '/'")
    canonical = path if _PLAIN_PATH.fullmatch(path) else _normalise(path)
    if "/." in canonical:
        for segment in canonical.split("/"):
            if segment in (".", ".."):
                raise CanonicalError("a '.' or '..' path segment")
    return canonical


def _parameter(piece: str) -> tuple[str, str]:
    name, _, value = piece.partition("=")
    return name, value


def canonical_query(query: str) -> str:
    """The canonical form of a query (without its ``?``): ``""`` when there is none.

    :raises CanonicalError: a malformed escape or a raw ``#``.
    """
    if not query:
        return ""
    if not _PLAIN_QUERY.fullmatch(query):
        query = _normalise(query)
    pairs = [_parameter(piece) for piece in query.split("&") if piece]
    pairs.sort(key=_name_of)  # stable: repeated parameters keep their order
    return "&".join([f"{name}={value}" for name, value in pairs])


def _name_of(pair: tuple[str, str]) -> str:
    return pair[0]


def _split(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path, query


def canonical_request(
    method: str,
    target: str,
    *,
    body_sha256: str,
    timestamp: str,
    nonce: str,
    key_id: str,
    idempotency_key: str = "",
    challenge: str = "",
) -> bytes:
    """The bytes a request signature covers.

    ``target`` is the path and query as sent (``/v1/items?since=5``); the
    other fields are their wire forms, already checked by the caller;
    ``idempotency_key`` and ``challenge`` are ``""`` when the request
    carries no such header.

    :raises CanonicalError: the method or target has no canonical form.
    """
    upper = method.upper()
    if not (method.isascii() and _METHOD.fullmatch(upper)):
        raise CanonicalError("a method is 1 to 20 letters")
    path, query = _split(target)
    fields = (
        REQUEST_LABEL,
        upper,
        canonical_path(path),
        canonical_query(query),
        body_sha256,
        timestamp,
        nonce,
        key_id,
        idempotency_key,
        challenge,
    )
    try:
        return "\n".join(fields).encode("ascii")
    except UnicodeEncodeError:
        raise CanonicalError("a signed field is not ASCII") from None


def canonical_response(
    status: int, *, body_sha256: str, nonce: str, key_id: str, server_time: str
) -> bytes:
    """The bytes a response signature covers: bound to its request by the request's nonce."""
    fields = (RESPONSE_LABEL, str(status), body_sha256, nonce, key_id, server_time)
    return "\n".join(fields).encode("ascii")


def body_sha256(body: bytes) -> str:
    """Lowercase hex SHA-256 of ``body``."""
    return hashlib.sha256(body).hexdigest()
