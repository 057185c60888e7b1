"""What the benchmarks share: keys for every library, file-to-file jobs, an account."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyrage  # type: ignore[import-untyped]
import tink  # type: ignore[import-untyped]
from pytest_benchmark.fixture import BenchmarkFixture
from tink import secret_key_access, streaming_aead

from strongroom.formats.chunked import decrypt_stream, encrypt_stream
from strongroom.formats.context import Context
from strongroom.keys import AccountKeys
from strongroom.store import Store, StoreBinding
from strongroom.testing import make_account_keys
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.stores.files import FilesStore

MiB = 1 << 20
CONTEXT = Context(account="bench", store="files", record="")
AD = b"bench"  # tink's associated data; age has none
STREAMERS = ("strongroom", "tink", "age")
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does: the full run, or the quick smoke run."""

    stream: int  # bytes of the file-to-file streams
    stream_rounds: int
    store_counts: tuple[int, ...]  # records in the store benchmarks
    blob: int  # bytes of the blob read in ranges
    cli_rounds: int
    burst: int  # gets in the agent burst


FULL = Sizes(1 << 30, 3, (1_000, 10_000, 100_000), 256 * MiB, 20, 100)
QUICK = Sizes(4 * MiB, 1, (100,), 4 * MiB, 1, 3)


@dataclass
class StreamKeys:
    """One key per streaming library, as strings so a child process can have them too."""

    strongroom: str
    tink: str
    age: str

    @classmethod
    def generate(cls) -> StreamKeys:
        streaming_aead.register()
        handle = tink.new_keyset_handle(
            streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
        )
        return cls(
            strongroom=os.urandom(32).hex(),
            tink=tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN),
            age=str(pyrage.x25519.Identity.generate()),
        )

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def stream_job(keys: StreamKeys, subject: str, op: str) -> Callable[[Path, Path], None]:
    """``job(source, target)``: encrypt or decrypt one file into another with ``subject``."""
    if subject == "strongroom":
        suite, key = Aes256Gcm(), bytes.fromhex(keys.strongroom)

        def strongroom(src: Path, dst: Path) -> None:
            with open(src, "rb") as source, open(dst, "wb") as sink:
                if op == "encrypt":
                    encrypt_stream(source, sink, suite, key, 1, CONTEXT, manifest=False)
                else:
                    decrypt_stream(source, sink, lambda _version: (suite, key), CONTEXT)

        return strongroom
    if subject == "tink":
        streaming_aead.register()
        handle = tink.json_proto_keyset_format.parse(keys.tink, secret_key_access.TOKEN)
        primitive: Any = handle.primitive(streaming_aead.StreamingAead)

        def tink_job(src: Path, dst: Path) -> None:
            with open(src, "rb") as source, open(dst, "wb") as sink:
                if op == "encrypt":
                    with primitive.new_encrypting_stream(sink, AD) as stream:
                        shutil.copyfileobj(source, stream, MiB)
                else:
                    with primitive.new_decrypting_stream(source, AD) as stream:
                        shutil.copyfileobj(stream, sink, MiB)

        return tink_job
    identity = pyrage.x25519.Identity.from_str(keys.age)

    def age(src: Path, dst: Path) -> None:
        if op == "encrypt":
            pyrage.encrypt_file(str(src), str(dst), [identity.to_public()])
        else:
            pyrage.decrypt_file(str(src), str(dst), [identity])

    return age


def make_file(path: Path, size: int) -> Path:
    """``size`` random bytes, written a MiB at a time."""
    with open(path, "wb") as handle:
        for offset in range(0, size, MiB):
            handle.write(os.urandom(min(MiB, size - offset)))
    return path


@dataclass
class Account:
    """A created, unlocked account (strongroom.testing's in-memory provider), one files store."""

    keys: AccountKeys
    store: FilesStore

    @classmethod
    def create(cls, directory: Path, name: str = "notes") -> Account:
        keys = make_account_keys(directory / "keys", account="bench")
        keys.create()
        store_dir = directory / "stores" / name
        store_dir.mkdir(mode=0o700, parents=True)
        store = FilesStore(binding=StoreBinding("bench", name, store_dir, keys))
        keys.ensure(*store.key_purposes)
        return cls(keys, store)

    def rotate(self) -> None:
        """A new primary for the store's keyset: everything is now due for re-encryption."""
        self.keys.rotate(self.store.binding.purpose)

    def close(self) -> None:
        self.store.close()
        self.keys.close()


def put_all(store: Store, records: dict[str, bytes]) -> None:
    """The store's bulk write where it has one (``put_many``), else one ``put`` each."""
    put_many = getattr(store, "put_many", None)
    if put_many is not None:
        put_many(records.items())
    else:
        for name, value in records.items():
            store.put(name, value)


def pedantic(
    benchmark: BenchmarkFixture,
    target: Callable[..., T],
    *args: Any,
    setup: Callable[[], object] | None = None,
    rounds: int = 1,
    warmup_rounds: int = 0,
) -> T:
    """``benchmark.pedantic``, typed: one call per round, ``setup`` untimed before each."""
    result: T = benchmark.pedantic(  # type: ignore[no-untyped-call]
        target, args, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds
    )
    return result
