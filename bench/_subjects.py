"""Fixtures of the data-at-rest benchmarks: keys for every library, files, sinks, accounts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import tink  # type: ignore[import-untyped]
from _timing import MiB
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyrage import x25519  # type: ignore[import-untyped]
from tink import secret_key_access, streaming_aead

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import AuthenticationError
from strongroom.formats.context import Context
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom.keys import AccountKeys
from strongroom.store import StoreBinding
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.stores.files import FilesStore

#: What the CLI binds ``strongroom encrypt`` output to, give or take the account name.
CONTEXT = Context(account="bench", store="files", record="")
#: tink's associated data; age has none.
ASSOCIATED_DATA = b"bench"
PIECE = MiB


@dataclass
class Keys:
    """One key per library, and the JSON that hands them to a child process."""

    suite: CipherSuite
    key: bytes
    tink_aead: Any
    tink_keyset: str
    age_identity: Any

    @classmethod
    def generate(cls) -> Keys:
        streaming_aead.register()
        handle = tink.new_keyset_handle(
            streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
        )
        return cls(
            suite=Aes256Gcm(),
            key=os.urandom(32),
            tink_aead=handle.primitive(streaming_aead.StreamingAead),
            tink_keyset=tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN),
            age_identity=x25519.Identity.generate(),
        )

    def key_for(self, _version: int) -> tuple[CipherSuite, bytes]:
        return self.suite, self.key

    def for_child(self) -> str:
        return json.dumps(
            {
                "strongroom": self.key.hex(),
                "tink": self.tink_keyset,
                "age": str(self.age_identity),
            }
        )


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes, written a MiB at a time."""
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = min(left, PIECE)
            handle.write(os.urandom(piece))
            left -= piece


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class NullSink:
    """A sink that drops what it is given, like ``/dev/null`` without the system calls."""

    def write(self, data: memoryview, /) -> int:
        return len(data)


class BenchKeyProvider(KeyProvider):
    """Wraps under an in-memory AES-256-GCM key: strongroom.testing's MemoryKeyProvider.

    That one lives in ``strongroom.testing``, which imports pytest; the bench
    session installs no test tools, so this is the same thing built on the
    public ``KeyProvider`` interface.
    """

    traits: ClassVar[KeyProviderTraits] = KeyProviderTraits(
        non_exportable_root=False, needs_user_presence=False, survives_reinstall=False
    )

    def __init__(self) -> None:
        super().__init__()
        self._aead = AESGCM(os.urandom(32))

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, bytes(secret), context.encode())

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], context.encode())
        except Exception:
            raise AuthenticationError from None


@dataclass
class Account:
    """A created, unlocked account with one open ``files`` store called ``notes``."""

    keys: AccountKeys
    store: FilesStore

    @classmethod
    def create(cls, directory: Path) -> Account:
        suite = Aes256Gcm()
        keys = AccountKeys(
            account="bench",
            directory=directory,
            providers={"memory": BenchKeyProvider()},
            provider_backends={"memory": "in-memory (bench only)"},
            suite_for=lambda _name: suite,
            default_suite=suite.name,
        )
        keys.create()
        store_dir = directory / "stores" / "notes"
        store_dir.mkdir(mode=0o700, parents=True)
        store = FilesStore(binding=StoreBinding("bench", "notes", store_dir, keys))
        return cls(keys, store)

    def close(self) -> None:
        self.store.close()
        self.keys.close()
