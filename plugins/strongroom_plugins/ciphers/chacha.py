"""ChaCha20-Poly1305 from pyca/cryptography: fast without AES hardware."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305 as _ChaCha

from strongroom_plugins.ciphers._pyca import PycaSuite


class ChaCha20Poly1305(PycaSuite):
    """ChaCha20-Poly1305 with 96-bit nonces (RFC 8439)."""

    name = "chacha20-poly1305"
    code = 0x0002
    key_size = 32
    nonce_size = 12
    aead_class = _ChaCha
