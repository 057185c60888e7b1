"""The ``strongroom`` command with the master key wrapped in the OS keyring.

The tests that need a keyring start a real gnome-keyring on a private D-Bus
(``tests/services.py``) and run the CLI in subprocesses with that session's
environment; ``secret-tool`` checks from outside what the keyring holds.
Two configs share one data directory: ``both`` wraps the master key with
``[key_providers.os] use = "keyring"`` and a passphrase recovery provider,
``keyring_only`` configures the keyring provider alone, to show what happens
when the keyring cannot answer.  The keyring also keeps the key record's
generation, so an older record put back is refused while the keyring is
configured.  The helpers come from ``test_cli_data.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from test_cli_data import (
    PASSPHRASE,
    Account,
    assert_holds_only_wrapped_keys,
    clean_environ,
    concurrently,
    passphrase_table,
    snapshot,
    write_config,
    write_private,
)

from services import GnomeKeyring

KEYRING_TABLE = '[key_providers.os]\nuse = "keyring"\n'
KEK_ITEM = {"service": "strongroom", "username": "alice:kek"}
GENERATION_ITEM = {"service": "strongroom", "username": "alice:generation"}
LOCKED = "the OS keyring (keyring.backends.SecretService.Keyring) is locked; unlock it and retry"
UNREACHABLE = "no OS keyring service is reachable"


def accounts(root: Path, env: dict[str, str]) -> tuple[Account, Account]:
    """``(both, keyring_only)``: account ``alice`` under two configs sharing ``root / "data"``."""
    data_dir = root / "data"
    recovery = write_private(root / "recovery.pass", PASSPHRASE)
    both = write_config(
        root / "both.toml",
        data_dir,
        KEYRING_TABLE,
        passphrase_table("recovery", recovery),
        stores=("default",),
    )
    keyring_only = write_config(root / "keyring.toml", data_dir, KEYRING_TABLE, stores=("default",))
    return Account(both, data_dir, env), Account(keyring_only, data_dir, env)


def test_the_keyring_unlocks_until_its_item_is_erased(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    both, keyring_only = accounts(tmp_path, clean_environ())  # the private bus's environment
    init = both.text("init").splitlines()
    assert init[1] == "master key wrapped by: os (keyring), recovery (passphrase)"
    kek = gnome_keyring.secret_tool_lookup(**KEK_ITEM)
    assert kek is not None
    assert len(base64.b64decode(kek, validate=True)) == 32
    assert_holds_only_wrapped_keys(both.keys_file, kek, base64.b64decode(kek))
    keyring_only.run("put", "default", "k", stdin=b"value")  # no passphrase involved

    # Removing the keyring provider erases its item; the passphrase still unlocks.
    removed = both.text("providers", "remove", "os")
    assert removed == "provider 'os' no longer unlocks account 'alice'\n"
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is None
    value, refused = concurrently(
        lambda: both.run("get", "default", "k").stdout,
        lambda: keyring_only.error("get", "default", "k", code=4),
    )
    assert value == b"value"
    assert refused == (
        "account 'alice': none of its providers is configured (it is wrapped by: recovery)"
    )

    both.run("providers", "add", "os")
    fresh = gnome_keyring.secret_tool_lookup(**KEK_ITEM)
    assert fresh is not None
    assert fresh != kek
    assert keyring_only.run("get", "default", "k").stdout == b"value"

    wiped = both.text("wipe", "--yes")
    assert wiped.startswith("account 'alice' wiped: keys destroyed, provider roots erased")
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is None
    assert not both.directory.exists()
    line = keyring_only.error("get", "default", "k", code=4)
    assert line == f"account 'alice' has no keys in {both.directory}; run 'strongroom init'"


def test_a_locked_or_unreachable_keyring_unlocks_nothing(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    both, keyring_only = accounts(tmp_path, clean_environ())
    both.run("init")
    keyring_only.run("put", "default", "k", stdin=b"value")
    gnome_keyring.lock()
    assert gnome_keyring.is_locked()
    before = snapshot(both.data_dir)

    dead_bus = {**keyring_only.env, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    locked_get, locked_put, unreachable, recovered = concurrently(
        lambda: keyring_only.error("get", "default", "k", code=4),
        lambda: keyring_only.error("put", "default", "k", stdin=b"new", code=4),
        lambda: keyring_only.error("get", "default", "k", code=4, env=dead_bus),
        lambda: both.run("get", "default", "k").stdout,  # the recovery passphrase opens it
    )
    assert locked_get == LOCKED
    assert locked_put == LOCKED
    assert unreachable.startswith(UNREACHABLE)
    assert recovered == b"value"
    assert snapshot(both.data_dir) == before
    assert gnome_keyring.is_locked()


def test_init_needs_a_keyring_service(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_environ(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_RUNTIME_DIR=str(tmp_path),
        DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus",
    )
    _, keyring_only = accounts(tmp_path, env)
    line = keyring_only.error("init", code=4)
    assert line.startswith(UNREACHABLE)
    assert not keyring_only.keys_file.exists()


def test_a_key_record_put_back_is_refused_while_the_keyring_keeps_its_generation(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    both, keyring_only = accounts(tmp_path, clean_environ())
    passphrase_only = Account(
        write_config(
            tmp_path / "passphrase.toml",
            both.data_dir,
            passphrase_table("recovery", tmp_path / "recovery.pass"),
            stores=("default",),
        ),
        both.data_dir,
        both.env,
    )
    both.run("init")
    keyring_only.run("put", "default", "k", stdin=b"value")

    def kept() -> int:
        stored = gnome_keyring.secret_tool_lookup(**GENERATION_ITEM)
        assert stored is not None
        return int(stored)

    assert kept() == both.record()["generation"]
    backup = both.keys_file.read_bytes()
    keyring_only.run("keys", "rotate", "--purpose", "store:default")
    assert kept() == both.record()["generation"] > json.loads(backup)["generation"]

    both.keys_file.write_bytes(backup)  # an older copy put back: rotation undone
    for account in (keyring_only, both):  # whichever provider unwraps, the keyring refuses
        line = account.error("get", "default", "k", code=3)
        assert "older than provider 'os' last saw" in line
    # The passphrase keeps no state: without the keyring configured, the rollback passes.
    assert passphrase_only.run("get", "default", "k").stdout == b"value"

    # Recovery on purpose: keep the restored record, above the kept generation.
    keyring_only.run("keys", "accept-rollback")
    assert kept() == both.record()["generation"]
    assert keyring_only.run("get", "default", "k").stdout == b"value"

    # Wiping erases the generation with the KEK: a new account of the same name starts over.
    both.run("wipe", "--yes")
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is None
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) is None
