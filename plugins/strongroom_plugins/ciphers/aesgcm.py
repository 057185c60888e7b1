"""AES-256-GCM from pyca/cryptography (OpenSSL), with hardware AES where present."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom_plugins.ciphers._pyca import PycaSuite


class Aes256Gcm(PycaSuite):
    """AES-256-GCM with 96-bit nonces and 128-bit tags (NIST SP 800-38D)."""

    name = "aes-256-gcm"
    code = 0x0001
    key_size = 32
    nonce_size = 12
    aead_class = AESGCM
