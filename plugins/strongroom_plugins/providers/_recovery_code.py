"""The printable form of a recovery key: 160 random bits and a checksum, grouped base32.

A recovery key is written on paper and typed back years later, so the
printable form is built for people: RFC 4648 base32 (no lower case, no
digits 0, 1, 8 or 9 to confuse with letters), in ten groups of four::

    seed      20 random bytes (160 bits)
    checksum  the first 5 bytes of SHA-256(b"strongroom/v1/recovery-key-checksum" || seed)
    text      base32(seed || checksum), 40 characters, "-" between groups of 4

Reading forgives what people do: lower case, spaces, missing or extra
hyphens, and 0, 1 and 8 typed for O, I and B.  A 40-bit checksum catches a
mistyped character (or two swapped) before any key is derived from it, so
a typo is reported as a typo, not as the wrong key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from strongroom.errors import UnlockFailedError

__all__ = ["SEED_SIZE", "new_seed", "parse", "printable"]

SEED_SIZE = 20
_CHECKSUM_SIZE = 5
_LABEL = b"strongroom/v1/recovery-key-checksum"
_LENIENT = str.maketrans({"0": "O", "1": "I", "8": "B", "-": None, " ": None, "\t": None})


def new_seed() -> bytearray:
    """20 fresh random bytes: the secret a recovery key prints."""
    return bytearray(os.urandom(SEED_SIZE))


def printable(seed: bytes | bytearray) -> str:
    """``seed`` with its checksum, as ten groups of four base32 characters."""
    text = base64.b32encode(bytes(seed) + _checksum(seed)).decode("ascii")
    return "-".join(text[start : start + 4] for start in range(0, len(text), 4))


def parse(text: str | bytes) -> bytearray:
    """The seed a typed recovery key holds.

    :raises strongroom.errors.UnlockFailedError: it is not 40 base32 characters,
        or its checksum does not match (a typo): nothing is derived from it.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    compact = text.strip().upper().translate(_LENIENT)
    try:
        raw = bytearray(base64.b32decode(compact))
    except ValueError:
        raw = bytearray()
    seed, checksum = raw[:SEED_SIZE], bytes(raw[SEED_SIZE:])
    raw[:] = bytes(len(raw))
    if len(compact) != 40 or not hmac.compare_digest(checksum, _checksum(seed)):
        seed[:] = bytes(len(seed))
        raise UnlockFailedError(
            "that is not a recovery key: expected ten groups of four letters and digits "
            "2-7, and its checksum does not match (a typo?)"
        )
    return seed


def _checksum(seed: bytes | bytearray) -> bytes:
    return hashlib.sha256(_LABEL + bytes(seed)).digest()[:_CHECKSUM_SIZE]
