"""``Context``: the identity a ciphertext is bound to.

Every format puts ``Context.encode()`` into the associated data of each AEAD
call, so a ciphertext moved to another record, store or account fails
authentication instead of decrypting in the wrong place.  The encoding is
specified byte by byte in ``docs/formats.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from strongroom.errors import UsageError

__all__ = ["CONTEXT_LABEL", "Context"]

#: The first bytes of every encoded context; names the encoding and its version.
CONTEXT_LABEL = b"strongroom/ctx/v1"
_MAX_FIELD = 0xFFFF
_LENGTH = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Context:
    """Where a ciphertext belongs: an account, a store in it, a record in the store.

    The fields are free-form text; strongroom's own callers use the account
    name, the store's configured name and the record key.  Each field must
    encode to at most 65535 bytes of UTF-8.
    """

    account: str
    store: str
    record: str
    _encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [CONTEXT_LABEL]
        for name in ("account", "store", "record"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise UsageError(f"context {name} must be a str, not {type(value).__name__}")
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"context {name} is not encodable as UTF-8") from None
            if len(data) > _MAX_FIELD:
                raise UsageError(f"context {name} is longer than {_MAX_FIELD} bytes of UTF-8")
            parts += (_LENGTH.pack(len(data)), data)
        object.__setattr__(self, "_encoded", b"".join(parts))  # once: every AEAD call uses it

    def encode(self) -> bytes:
        """``b"strongroom/ctx/v1"`` then each field as u16 big-endian length and UTF-8 bytes.

        The fields come in the order account, store, record.  The encoding is
        injective: two different contexts never encode to the same bytes.
        """
        return self._encoded
