"""Small records: one seal, one open, against tink-py, raw AES-GCM, PyNaCl and Fernet.

Each subject seals with the associated data it supports (none for SecretBox and Fernet); openings
reuse one sealed record, as a reader of many records reuses its keys.  strongroom seals as a
store does, through the key's batch sealer (``Subkeys``): one derivation per batch, cached.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import nacl.secret
import pytest
import tink  # type: ignore[import-untyped]
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pytest_benchmark.fixture import BenchmarkFixture
from tink import aead

from strongroom.formats.context import Context
from strongroom.formats.sealed import Subkeys, open_sealed
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

CONTEXT = Context(account="bench", store="notes", record="record-000001")
AD = CONTEXT.encode()
SUBJECTS = ("strongroom", "tink Aead AES256_GCM", "AESGCM (raw)", "PyNaCl SecretBox", "Fernet")


def codec(subject: str) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """``(seal, open)`` for one subject, under a fresh key."""
    if subject == "strongroom":
        subkeys = Subkeys(Aes256Gcm(), os.urandom(32), 1)

        def key_for(_version: int) -> Subkeys:  # made once, as tink's primitive is
            return subkeys

        return (
            lambda value: subkeys.seal(value, CONTEXT),
            lambda blob: open_sealed(blob, key_for, CONTEXT),
        )
    if subject.startswith("tink"):
        aead.register()
        tink_aead = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
        return lambda value: tink_aead.encrypt(value, AD), lambda blob: tink_aead.decrypt(blob, AD)
    if subject.startswith("AESGCM"):
        cipher = AESGCM(AESGCM.generate_key(256))
        return (
            lambda value: (nonce := os.urandom(12)) + cipher.encrypt(nonce, value, AD),
            lambda blob: cipher.decrypt(blob[:12], blob[12:], AD),
        )
    if subject.startswith("PyNaCl"):
        box = nacl.secret.SecretBox(os.urandom(32))
        return lambda value: bytes(box.encrypt(value)), box.decrypt
    token = Fernet(Fernet.generate_key())
    return token.encrypt, token.decrypt


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("op", ["seal", "open"])
@pytest.mark.parametrize("size", [64, 1024, 16384])
def test_record(benchmark: BenchmarkFixture, subject: str, op: str, size: int) -> None:
    encrypt, decrypt = codec(subject)
    blob = encrypt(value := os.urandom(size))
    assert decrypt(blob) == value
    benchmark.group = f"records: {op} {size} B"
    benchmark.extra_info.update(subject=subject, ops=1)
    target, argument = (encrypt, value) if op == "seal" else (decrypt, blob)
    benchmark(target, argument)
