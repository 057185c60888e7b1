"""The ``vault`` provider's wrap blob: a Transit ciphertext in a fixed binary frame.

Transit answers ``vault:v<N>:<base64>``; the blob keeps the same content as
bytes, so every byte of it is covered by the AEAD tag or checked here, and
a base64 quirk (ignored padding bits) can never let an altered blob open::

    offset  size  field
         0     4  magic b"SRVT"
         4     1  format version, 0x01
         5     1  binding: 0x01 derived-key context, 0x02 associated data
         6     4  Transit key version, u32 big-endian, 1 or more
        10    n   Transit's ciphertext, base64-decoded (nonce, sealed secret, tag)
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from typing import Final

from strongroom.errors import IntegrityError, ProviderUnreachableError
from strongroom_plugins.providers._vault_settings import Binding
from strongroom_plugins.providers._wrapping import check_magic

__all__ = ["MAGIC", "TransitWrap"]

MAGIC: Final = b"SRVT"
VERSION: Final = 1
_HEADER = struct.Struct(">4sBBI")
_BINDINGS: Final[dict[Binding, int]] = {"context": 1, "associated_data": 2}
#: GCM's nonce and tag: a shorter ciphertext is not one.
_MIN_CIPHERTEXT = 12 + 16
_TRANSIT = re.compile(r"vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})")


@dataclass(frozen=True)
class TransitWrap:
    """One Transit ciphertext and how its context was bound."""

    binding: Binding
    key_version: int
    ciphertext: bytes

    @classmethod
    def from_transit(cls, binding: Binding, answer: object) -> TransitWrap:
        """Parse what Transit returned for encrypt or rewrap.

        :raises strongroom.errors.ProviderUnreachableError: it is not a Transit ciphertext.
        """
        found = _TRANSIT.fullmatch(answer) if isinstance(answer, str) else None
        if found is None:
            raise ProviderUnreachableError("Vault answered with something that is no ciphertext")
        return cls(binding, int(found[1]), base64.b64decode(found[2]))

    @classmethod
    def from_blob(cls, blob: bytes) -> TransitWrap:
        """:raises strongroom.errors.IntegrityError: not a blob of this format."""
        check_magic(blob, MAGIC, VERSION, "Vault-wrapped key")
        if len(blob) < _HEADER.size + _MIN_CIPHERTEXT:
            raise IntegrityError("the wrapped key is truncated")
        _magic, _version, code, key_version = _HEADER.unpack_from(blob)
        binding = next((name for name, value in _BINDINGS.items() if value == code), None)
        if binding is None or key_version == 0:
            raise IntegrityError("the Vault-wrapped key has an unknown binding or key version")
        return cls(binding, key_version, blob[_HEADER.size :])

    def to_blob(self) -> bytes:
        header = _HEADER.pack(MAGIC, VERSION, _BINDINGS[self.binding], self.key_version)
        return header + self.ciphertext

    def to_transit(self) -> str:
        """The ``vault:v<N>:<base64>`` string Transit reads."""
        return f"vault:v{self.key_version}:{base64.b64encode(self.ciphertext).decode('ascii')}"
