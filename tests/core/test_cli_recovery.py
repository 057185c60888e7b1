"""Recovering an account whose root is lost, with its printable recovery key.

The config wraps the master key with a primary provider (a passphrase, or
the OS keyring on a real gnome-keyring) and a ``recovery-key`` provider
that writes each new recovery key to a file and, when recovering, reads
the typed key from another (``recovery_key = "file:..."``), standing for
the user's paper copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_cli_data import (
    FILE_VARIABLE,
    PASSPHRASE,
    WRONG_PASSPHRASE,
    Account,
    clean_environ,
    passphrase_table,
    snapshot,
    toml_string,
    write_config,
    write_private,
)
from test_cli_keyring import KEK_ITEM, KEYRING_TABLE

from services import GnomeKeyring
from strongroom import Strongroom, parse_config
from strongroom.config import BUILTIN_SOURCE
from strongroom.keys import _access
from strongroom_plugins.providers import _recovery_code

NEW_PASSPHRASE = "alice's new passphrase 7e2a"  # noqa: S105 - a test's own


def recovery_table(new_key: Path, typed: Path) -> str:
    return (
        '[key_providers.recovery]\nuse = "recovery-key"\n'
        f"write_new_key_to = {toml_string(new_key)}\n"
        f"recovery_key = {toml_string(f'file:{typed}')}\n"
    )


def make(root: Path, primary: str, env: dict[str, str]) -> tuple[Account, Path, Path]:
    """Account ``alice`` with ``primary`` and a recovery key; the shown and the typed key files."""
    shown, typed = root / "shown-recovery-key", root / "typed-recovery-key"
    config = write_config(
        root / "strongroom.toml", root / "data", primary, recovery_table(shown, typed)
    )
    return Account(config, root / "data", env), shown, typed


def type_key(shown: Path, typed: Path, text: str | None = None) -> None:
    typed.unlink(missing_ok=True)
    write_private(typed, text if text is not None else shown.read_text().strip())


def test_a_forgotten_passphrase_is_replaced_with_the_recovery_key(tmp_path: Path) -> None:
    passphrase = write_private(tmp_path / "passphrase", PASSPHRASE)
    env = clean_environ(**{FILE_VARIABLE: str(passphrase)})
    account, shown, typed = make(tmp_path, passphrase_table("main"), env)
    init = account.text("init").splitlines()
    assert init[1] == "master key wrapped by: main (passphrase), recovery (recovery-key)"
    assert shown.stat().st_mode & 0o777 == 0o600
    account.run("put", "notes", "k", stdin=b"value")
    assert shown.read_text().strip() not in account.keys_file.read_text()

    # The passphrase is forgotten: unlocking never turns to the recovery key by itself.
    write_private(passphrase, WRONG_PASSPHRASE)
    refused = account.error("get", "notes", "k", code=4)
    assert refused == "wrong passphrase for 'alice', or the wrapped key was altered"

    # A typo in the recovery key is named as one, and changes nothing.
    key = shown.read_text().strip()
    type_key(shown, typed, key[:-1] + ("A" if key[-1] != "A" else "B"))
    before = snapshot(account.directory)
    typo = account.error("recover", "--enrol", "main", code=4)
    assert "checksum does not match (a typo?)" in typo
    assert snapshot(account.directory) == before

    type_key(shown, typed)
    new_env = {**env, "STRONGROOM_NEW_PASSPHRASE_FILE": str(tmp_path / "new")}
    write_private(tmp_path / "new", NEW_PASSPHRASE)
    recovered = account.run("recover", "--enrol", "main", env=new_env).stdout.decode()
    assert recovered.splitlines() == [
        "the recovery key ('recovery') unlocks account 'alice'",
        "provider 'main' re-enrolled: it unlocks the account again",
    ]
    write_private(passphrase, NEW_PASSPHRASE)
    assert account.run("get", "notes", "k").stdout == b"value"


def test_the_paper_key_survives_a_master_rotation_and_a_new_one_replaces_it(
    tmp_path: Path,
) -> None:
    passphrase = write_private(tmp_path / "passphrase", PASSPHRASE)
    env = clean_environ(**{FILE_VARIABLE: str(passphrase)})
    account, shown, typed = make(tmp_path, passphrase_table("main"), env)
    account.run("init")
    account.run("put", "notes", "k", stdin=b"value")
    first = shown.read_text().strip()

    account.run("keys", "rotate", "--master")  # wraps to the same recovery key: nothing shown
    assert shown.read_text().strip() == first
    type_key(shown, typed)
    assert account.json("recover") == {"recovered_with": "recovery", "enrolled": []}

    # A new recovery key is never written over the file that may hold the current one.
    before = snapshot(account.directory)
    exists = account.error("keys", "rotate", "--provider", "recovery", code=4)
    assert "exists: it may hold the recovery key in use" in exists
    assert snapshot(account.directory) == before
    shown.rename(tmp_path / "old-recovery-key")
    account.run("keys", "rotate", "--provider", "recovery")
    second = shown.read_text().strip()
    assert second != first
    refused = account.error("recover", code=4)  # the typed key is still the first
    assert refused == (
        "that recovery key is not the one that wraps account 'alice' "
        "(another account's, or one replaced since)"
    )
    type_key(shown, typed)
    account.run("recover")


def test_recover_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    passphrase = write_private(tmp_path / "passphrase", PASSPHRASE)
    env = clean_environ(**{FILE_VARIABLE: str(passphrase)})
    plain = write_config(tmp_path / "plain.toml", tmp_path / "plain", passphrase_table("main"))
    assert Account(plain, tmp_path / "plain", env).error("recover", code=4) == (
        "account 'alice' has no keys in "
        f"{tmp_path / 'plain' / 'accounts' / 'alice'}; run 'strongroom init'"
    )
    account, shown, typed = make(tmp_path, passphrase_table("main"), env)
    account.run("init")
    type_key(shown, typed)
    assert account.error("recover", "--enrol", "nope", code=2) == (
        "configure [key_providers.nope] before enrolling it"
    )
    assert "makes a new recovery key" in account.error("recover", "--enrol", "recovery", code=2)
    assert account.error("recover", "--with", "nope", code=2) == (
        "provider 'nope' does not wrap account 'alice'"
    )


def test_a_deleted_keyring_item_is_reported_as_lost_and_recovered(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    account, shown, typed = make(tmp_path, KEYRING_TABLE, clean_environ())
    account.run("init")
    account.run("put", "notes", "k", stdin=b"value")
    gnome_keyring.run("secret-tool", "clear", *[part for item in KEK_ITEM.items() for part in item])
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is None

    lost = account.error("get", "notes", "k", code=4)
    assert "holds no key-encryption key for 'alice'" in lost
    assert lost.endswith(
        "to re-enrol 'os', run 'strongroom recover --with recovery --enrol os' "
        "with the recovery key"
    )
    type_key(shown, typed)
    account.run("recover", "--enrol", "os")
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is not None
    assert account.run("get", "notes", "k").stdout == b"value"


def test_a_rotation_whose_record_write_fails_shows_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = tmp_path / "shown"
    data: dict[str, Any] = {
        "strongroom": {"data_dir": str(tmp_path / "data"), "account": "alice"},
        "key_providers": {
            "main": {"use": "passphrase", "memory_kib": 19456, "iterations": 2},
            "recovery": {"use": "recovery-key", "write_new_key_to": str(shown)},
        },
    }
    config = parse_config(data, source=BUILTIN_SOURCE, environ={})
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
    assert _recovery_code.parse(shown.read_text())
    shown.rename(tmp_path / "paper")  # kept apart, as the user is told

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_access, "save_record", disk_full)
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.keys.unlock()
        with pytest.raises(OSError, match="No space left"):
            stack.keys.rewrap_for("recovery")  # keys rotate --provider recovery
    assert not shown.exists()  # no key that no record holds; the retry is not blocked
    monkeypatch.undo()
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.keys.unlock()
        stack.keys.rewrap_for("recovery")
    assert _recovery_code.parse(shown.read_text())
