"""Header names and wire forms of signed requests and responses.

Every value is ASCII with a fixed syntax, checked here before it is used,
so no field can carry a newline into a canonical string.
"""

from __future__ import annotations

import base64
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CHALLENGE",
    "IDEMPOTENCY_KEY",
    "KEY_ID",
    "NONCE",
    "REJECTED",
    "RESPONSE_SIGNATURE",
    "SERVER_TIME",
    "SIGNATURE",
    "TIMESTAMP",
    "b64",
    "find",
    "is_challenge",
    "is_idempotency_key",
    "is_key_id",
    "is_nonce",
    "is_signature",
    "is_time",
]

KEY_ID = "Strongroom-Key-Id"
TIMESTAMP = "Strongroom-Timestamp"
NONCE = "Strongroom-Nonce"
SIGNATURE = "Strongroom-Signature"
IDEMPOTENCY_KEY = "Idempotency-Key"
#: A challenge token for an operation that needs fresh authorisation; signed.
CHALLENGE = "Strongroom-Challenge"
RESPONSE_SIGNATURE = "Strongroom-Response-Signature"
SERVER_TIME = "Strongroom-Server-Time"
#: On a verifier's refusal: its reason code (a hint; the signed body says it too).
REJECTED = "Strongroom-Rejected"

#: The request headers every signed request carries, lower-cased.
REQUEST_HEADERS = tuple(name.lower() for name in (KEY_ID, TIMESTAMP, NONCE, SIGNATURE))
#: Every request header the verifier reads, lower-cased: those and the two optional ones.
VERIFIER_READS = frozenset({*REQUEST_HEADERS, IDEMPOTENCY_KEY.lower(), CHALLENGE.lower()})

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Decimal Unix seconds: no sign, no leading zero, at most 12 digits.
_TIME = re.compile(r"0|[1-9][0-9]{0,11}")
#: 16 bytes in base64url without padding: 22 characters, the last with 2 zero bits.
_NONCE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
#: 32 bytes (HMAC-SHA256) in base64url without padding: 43 characters, 2 zero bits.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
#: Printable ASCII without spaces, as an idempotency key.
_IDEMPOTENCY = re.compile(r"[!-~]{1,255}")


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def is_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


def is_time(value: str) -> bool:
    return _TIME.fullmatch(value) is not None


def is_nonce(value: str) -> bool:
    return _NONCE.fullmatch(value) is not None


def is_signature(value: str) -> bool:
    return _SIGNATURE.fullmatch(value) is not None


def is_idempotency_key(value: str) -> bool:
    return value == "" or _IDEMPOTENCY.fullmatch(value) is not None


def is_challenge(value: str) -> bool:
    """A challenge token has the idempotency key's syntax; empty is none."""
    return value == "" or _IDEMPOTENCY.fullmatch(value) is not None


def find(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of header ``name`` in any case; ``None`` if absent.

    :raises ValueError: the header appears more than once.
    """
    wanted = name.lower()
    found = None
    pairs = headers.items() if hasattr(headers, "items") else headers
    for key, value in pairs:
        if key.lower() == wanted:
            if found is not None:
                raise ValueError(f"header {name} appears more than once")
            found = value
    return found
