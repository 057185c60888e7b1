"""What the ``sqlcipher`` store's tests share: an account, a store, and a child process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from strongroom import Strongroom, parse_config
from strongroom.keys import AccountKeys
from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.sqlcipher.store import SqlcipherStore, SqlcipherStoreSettings

CHUNK = 4096
#: The in-memory provider's KEK, fixed so that a child process can unlock the same account.
KEK = bytes(range(32))
#: Found in no file of the store, in any encoding the tests look for.
MARKER = b"PLAINTEXT-MARKER-sqlc-91e2"


def open_sqlcipher_store(binding: StoreBinding, chunk_size: int = CHUNK) -> SqlcipherStore:
    return SqlcipherStore(SqlcipherStoreSettings(chunk_size=chunk_size), binding=binding)


def bind(keys: AccountKeys, name: str = "vault") -> StoreBinding:
    """Store ``name``'s directory and keys, its keyset made as ``strongroom init`` makes it."""
    directory = keys.directory / "stores" / name
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    binding = StoreBinding(keys.account, name, directory, keys)
    keys.ensure(binding.purpose)
    return binding


def new_keys(directory: Path, account: str = "alice") -> AccountKeys:
    return make_account_keys(directory, account=account, provider=MemoryKeyProvider(kek=KEK))


def files_of(store: SqlcipherStore) -> list[Path]:
    return sorted(path for path in store.binding.directory.iterdir() if path.is_file())


#: Prepended to a child's script: unlock the test account in ``sys.argv[1]``, open ``vault``.
CHILD_PRELUDE = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from strongroom.store import StoreBinding
    from strongroom.testing import MemoryKeyProvider, make_account_keys
    from strongroom_plugins.sqlcipher.store import SqlcipherStore, SqlcipherStoreSettings

    KEK = bytes(range(32))
    keys = make_account_keys(Path(sys.argv[1]), provider=MemoryKeyProvider(kek=KEK))
    keys.unlock()
    directory = Path(sys.argv[1]) / "stores" / "vault"
    binding = StoreBinding(keys.account, "vault", directory, keys)
    store = SqlcipherStore(SqlcipherStoreSettings(chunk_size=4096), binding=binding)

    def say(line):
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
    """
)


def child(keys: AccountKeys, script: str, *args: str) -> subprocess.Popen[str]:
    """A Python child running ``script`` after :data:`CHILD_PRELUDE`, talking on stdout."""
    code = CHILD_PRELUDE + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(keys.directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def sqlcipher_stack(root: Path) -> Iterator[Strongroom]:
    """A stack whose one store, ``vault``, is a sqlcipher store, initialised and unlocked."""
    config = parse_config(
        {
            "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
            "stores": {"vault": {"use": "sqlcipher"}},
        },
        source="test",
        environ={},
    )
    with Strongroom(config, secrets={"main": "a test passphrase 5a1e"}) as built:
        built.initialise()
        yield built
