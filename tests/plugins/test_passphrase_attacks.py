"""An altered passphrase wrap header cannot make Argon2id run at any cost it names."""

from __future__ import annotations

import struct

import pytest

from strongroom.errors import IntegrityError, UnlockFailedError
from strongroom.key_provider import WrapContext
from strongroom_plugins.providers import passphrase as passphrase_module
from strongroom_plugins.providers.passphrase import PassphraseProvider, PassphraseSettings

SMALL = PassphraseSettings(memory_kib=19456, iterations=2, lanes=1)
CONTEXT = WrapContext("alice", "master", 1)


def test_an_altered_header_cannot_make_argon2_allocate_gigabytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module docstring promises it; the accepted range goes up to 4 GiB and 64 passes."""
    provider = PassphraseProvider(SMALL, passphrase=lambda _request: "a passphrase")
    blob = bytearray(provider.wrap(b"k" * 32, CONTEXT))
    struct.pack_into(">III", blob, 5, 4 * 1024 * 1024, 64, 255)  # edited in keys.json

    def guarded(passphrase: bytes, salt: bytes, memory_kib: int, iterations: int, lanes: int):
        if memory_kib > 1024 * 1024:
            raise AssertionError(f"Argon2id asked for {memory_kib // 1024} MiB x {iterations}")
        raise UnlockFailedError("stop here")

    monkeypatch.setattr(passphrase_module, "_derive", guarded)
    with pytest.raises((IntegrityError, UnlockFailedError)):
        provider.unwrap(bytes(blob), CONTEXT)
