"""strongroom's binary formats, specified byte by byte in ``docs/formats.md``.

- :mod:`strongroom.formats.sealed`: one small object in one AEAD call
  (records, wrapped keys).
- :mod:`strongroom.formats.chunked`: large blobs, streamed, with random
  access, a last-chunk flag in every nonce, and a manifest of chunk hashes
  for resumable sync.
- :mod:`strongroom.formats.context`: the identity (account, store, record)
  every ciphertext is bound to through its associated data.

Both formats record the suite and key version in an authenticated header,
derive their keys from the data key and a random salt (per blob; per batch
of records, see :class:`Subkeys`), and commit to the data key.  Decryption
looks keys up through a ``key_for(version) -> (suite, data key) | Subkeys``
function, so data written under an old key version keeps opening after
rotation; :func:`peek_key_version` tells a caller when it is worth
re-encrypting.
"""

from __future__ import annotations

from strongroom.formats._derive import KeyFor, peek_key_version
from strongroom.formats.chunked import (
    DEFAULT_CHUNK_SIZE,
    ChunkedReader,
    ChunkedWriter,
    decrypt_stream,
    encrypt_stream,
)
from strongroom.formats.context import Context
from strongroom.formats.manifest import Manifest, manifest_of
from strongroom.formats.sealed import Subkeys, open_sealed, seal, sealed_overhead

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkedReader",
    "ChunkedWriter",
    "Context",
    "KeyFor",
    "Manifest",
    "Subkeys",
    "decrypt_stream",
    "encrypt_stream",
    "manifest_of",
    "open_sealed",
    "peek_key_version",
    "seal",
    "sealed_overhead",
]
