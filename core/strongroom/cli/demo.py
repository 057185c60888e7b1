"""``strongroom demo``: the data-at-rest story on the embedded default stack, then sync.

It runs in a throwaway directory with a throwaway passphrase and ignores any
config file, so it shows what strongroom does out of the box: init, records
and a file, rotation, re-encryption, a tampered file rejected, wipe.  Then,
with the ``server`` extra installed, two devices sync through the reference
server on loopback (:mod:`strongroom.cli._demo_sync`): a throwaway CA and
pins, a conflict, a replay refused, and no plaintext in the server's
database; without the extra, one line says that part was skipped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strongroom._stack import Strongroom
from strongroom.cli._io import output as output_file
from strongroom.cli._output import emit
from strongroom.config import BUILTIN_SOURCE, DEFAULT_STACK, parse_config
from strongroom.errors import IntegrityError, KeyUnavailableError
from strongroom.formats.chunked import decrypt_stream, encrypt_stream
from strongroom.formats.context import Context
from strongroom.keys.purposes import FILES, store_purpose
from strongroom.store import Store

STORE = "default"
FILE_PURPOSE = FILES


def run(args: argparse.Namespace) -> int:
    steps: list[str] = []
    with tempfile.TemporaryDirectory(prefix="strongroom-demo-") as scratch:
        root = Path(scratch)
        stack = Strongroom(_demo_config(root))
        try:
            _story(stack, root, steps.append)
        finally:
            stack.close()
        from strongroom.cli._demo_sync import sync_story

        sync_story(root, steps.append)
    emit(args, {"steps": steps}, _text(steps))
    return 0


def _demo_config(root: Path, **tables: Any) -> Any:
    """The default stack in ``root`` for account ``demo``, with ``tables`` added."""
    root.mkdir(parents=True, exist_ok=True)
    passphrase = root / "passphrase"
    passphrase.write_text(secrets.token_urlsafe(24))
    passphrase.chmod(0o600)
    providers = {
        name: {**table, "passphrase": f"file:{passphrase}"}
        for name, table in DEFAULT_STACK["key_providers"].items()
    }
    data = {
        **DEFAULT_STACK,
        "strongroom": {"data_dir": str(root / "data"), "account": "demo"},
        "key_providers": providers,
        **tables,
    }
    return parse_config(data, source=BUILTIN_SOURCE, environ={})


def _story(stack: Strongroom, root: Path, say: Callable[[str], None]) -> None:
    config = stack.config
    backends = ", ".join(f"[{choice.table}] {choice.use}" for choice in config.backends)
    say(f"stack: {backends}")

    stack.initialise()
    say(
        f"init: account 'demo' in {config.account_dir.relative_to(root)}; a random 256-bit master "
        "key, wrapped by an Argon2id passphrase key, is all that keys.json holds"
    )

    store = stack.store(STORE)
    store.put("notes/shopping", b"eggs, flour, milk")
    store.put("notes/secret", b"the safe combination is 12-34-56")
    photo = os.urandom(3 << 20)
    store.put_blob("photos/cat.jpg", [photo[i : i + 65536] for i in range(0, len(photo), 65536)])
    on_disk = sorted(  # the objects, not the lock file beside them
        p.name
        for p in (config.account_dir / "stores" / STORE).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    say(
        f"stored 2 records and a 3 MiB blob; on disk they are {len(on_disk)} files named like "
        f"{on_disk[0][:16]}..., revealing no record name"
    )

    sealed_file, context = _encrypt_a_file(stack, root, say)
    _rotate_and_reencrypt(stack, store, say)
    _reject_tampering(stack, root, sealed_file, context, say)
    _wipe(stack, say)


def _encrypt_a_file(
    stack: Strongroom, root: Path, say: Callable[[str], None]
) -> tuple[Path, Context]:
    keys, config = stack.keys, stack.config
    document = root / "report.txt"
    document.write_bytes(b"quarterly figures\n" * 150_000)
    sealed_file = root / "report.txt.sr"
    key = keys.data_key(FILE_PURPOSE)
    context = Context(account=config.account, store=FILE_PURPOSE, record="")
    with document.open("rb") as source, sealed_file.open("wb") as sink:
        manifest = encrypt_stream(
            source, sink, key.suite, key.material.view(), key.version, context, manifest=True
        )
    say(
        f"encrypted a {document.stat().st_size} byte file into {manifest.chunk_count} "
        f"authenticated chunk(s) with a manifest of chunk hashes for resumable sync"
    )
    return sealed_file, context


def _rotate_and_reencrypt(stack: Strongroom, store: Store, say: Callable[[str], None]) -> None:
    keys = stack.keys
    purpose = store_purpose(STORE)
    new_version = keys.rotate(purpose)
    still = store.get("notes/shopping")
    say(
        f"rotated the {purpose} keyset to version {new_version}: nothing was re-encrypted, "
        f"old records still open ({still.decode()!r})"
    )

    done, total = deque(store.reencrypt(), maxlen=1).pop()
    keys.destroy(purpose, new_version - 1)
    say(
        f"re-encrypted {done} of {total} objects under version {new_version}, then destroyed "
        f"version {new_version - 1}; every record still opens"
    )
    _check(store.get("notes/secret").startswith(b"the safe"), "a re-encrypted record is lost")

    master = keys.rotate_master()
    say(f"rotated the master key to version {master}: data keys re-wrapped, data untouched")


def _reject_tampering(
    stack: Strongroom, root: Path, sealed_file: Path, context: Context, say: Callable[[str], None]
) -> None:
    tampered = bytearray(sealed_file.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    sealed_file.write_bytes(tampered)
    output = root / "report.decrypted.txt"
    rejected = False
    try:
        with sealed_file.open("rb") as source, output_file(str(output)) as sink:
            decrypt_stream(source, sink, stack.keys.key_lookup(FILE_PURPOSE), context)
    except IntegrityError:
        rejected = True
    _check(rejected and not output.exists(), "a tampered file was not rejected")
    say(
        "flipped one bit in the encrypted file: decryption refused it (exit code 3 on the "
        f"command line) and {output.name} was never created"
    )


def _wipe(stack: Strongroom, say: Callable[[str], None]) -> None:
    stack.wipe()
    try:
        stack.keys.unlock()
    except KeyUnavailableError:
        say("wiped the account: wrapped keys destroyed first, then the data; nothing unlocks")
    else:
        _check(False, "wiped keys still unlock")


def _check(condition: bool, failure: str) -> None:
    """The demo checks its own story; a broken step is a bug, not a user error."""
    if not condition:
        raise RuntimeError(failure)


def _text(steps: list[str]) -> list[str]:
    lines = [
        "strongroom demo: the embedded default stack, then two devices syncing through the "
        "reference server, in a temporary directory",
        "",
    ]
    lines += [f"{number}. {step}" for number, step in enumerate(steps, start=1)]
    return lines
