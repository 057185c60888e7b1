"""Small records: one seal, one open, against tink-py, raw AES-GCM, PyNaCl and Fernet.

Each subject seals with the associated data it supports (none for SecretBox
and Fernet); openings reuse one sealed record, as a reader of many records
reuses its keys.  A change in how strongroom seals changes only
``strongroom()``.
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

from strongroom.formats import sealed
from strongroom.formats.context import Context
from strongroom.formats.sealed import open_sealed, seal
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

Codec = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]
CONTEXT = Context(account="bench", store="notes", record="record-000001")
AD = CONTEXT.encode()


def strongroom() -> Codec:
    """As a store seals: through the key's batch sealer where the format has one."""
    suite, key = Aes256Gcm(), os.urandom(32)
    batch = getattr(sealed, "Subkeys", None)  # format 2: one derivation per batch, cached
    if batch is not None:
        subkeys = batch(suite, key, 1)
        return (
            lambda value: subkeys.seal(value, CONTEXT),
            lambda blob: open_sealed(blob, lambda _version: subkeys, CONTEXT),
        )
    return (
        lambda value: seal(suite, key, 1, value, CONTEXT),
        lambda blob: open_sealed(blob, lambda _version: (suite, key), CONTEXT),
    )


def tink_aead() -> Codec:
    aead.register()
    primitive = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
    return (lambda value: primitive.encrypt(value, AD), lambda blob: primitive.decrypt(blob, AD))


def aesgcm() -> Codec:
    cipher = AESGCM(AESGCM.generate_key(256))

    def encrypt(value: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + cipher.encrypt(nonce, value, AD)

    return encrypt, lambda blob: cipher.decrypt(blob[:12], blob[12:], AD)


def secretbox() -> Codec:
    box = nacl.secret.SecretBox(os.urandom(32))
    return lambda value: bytes(box.encrypt(value)), box.decrypt


def fernet() -> Codec:
    token = Fernet(Fernet.generate_key())
    return token.encrypt, token.decrypt


SUBJECTS = {
    "strongroom": strongroom,
    "tink Aead AES256_GCM": tink_aead,
    "AESGCM (raw)": aesgcm,
    "PyNaCl SecretBox": secretbox,
    "Fernet": fernet,
}


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("op", ["seal", "open"])
@pytest.mark.parametrize("size", [64, 1024, 16384])
def test_record(benchmark: BenchmarkFixture, subject: str, op: str, size: int) -> None:
    encrypt, decrypt = SUBJECTS[subject]()
    value = os.urandom(size)
    blob = encrypt(value)
    assert decrypt(blob) == value
    benchmark.group = f"records: {op} {size} B"
    benchmark.extra_info.update(subject=subject, ops=1)
    if op == "seal":
        benchmark(encrypt, value)
    else:
        benchmark(decrypt, blob)
