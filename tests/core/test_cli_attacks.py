"""Attacks through the CLI: put-back objects, passphrases changed by mistake, hostile key names."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cli_data import Account, cli_command, make_account


@pytest.fixture
def account(tmp_path: Path) -> Account:
    made = make_account(tmp_path)
    made.run("init")
    return made


def test_an_object_put_back_below_the_floor_can_be_found_and_purged(
    account: Account, tmp_path: Path
) -> None:
    account.run("put", "default", "kept", stdin=b"value")
    account.run("put", "default", "old", stdin=b"old value")
    records = account.directory / "stores" / "default" / "records"
    shutil.copytree(records, tmp_path / "backup")
    account.run("keys", "rotate")
    assert account.text("keys", "reencrypt").startswith("default: 2 of 2 current")
    shutil.rmtree(records)
    shutil.copytree(tmp_path / "backup", records)  # a partial restore of the store
    # Refusing the old copies is right; but one of them blocks listing the whole store,
    # names no object, and 'keys unreadable' does not see it, so nothing can clear it.
    listed = account.json("keys", "unreadable")["unreadable"]["default"]
    assert len(listed) == 2
    account.run("keys", "unreadable", "--purge")
    account.run("ls", "default")


def test_a_fifo_named_keys_json_does_not_hang_wipe(account: Account) -> None:
    account.keys_file.unlink()
    os.mkfifo(account.keys_file)
    try:
        result = subprocess.run(
            [*cli_command(), "--config", str(account.config), "wipe", "--yes"],
            env=account.env,
            capture_output=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("wipe hangs on a FIFO named keys.json")
    assert result.returncode == 0
    assert not account.directory.exists()


def test_a_master_rotation_never_changes_a_passphrase_it_was_not_told_to(
    tmp_path: Path,
) -> None:
    from test_cli_data import (
        FILE_VARIABLE,
        PASSPHRASE,
        passphrase_table,
        write_config,
        write_private,
    )

    account = make_account(tmp_path)
    recovery = write_private(tmp_path / "recovery.pass", "recovery passphrase 0b7e")
    write_config(
        account.config,
        account.data_dir,
        passphrase_table("main"),
        passphrase_table("recovery", recovery),
    )
    account.run("init")
    account.run("put", "default", "k", stdin=b"value")
    typo = write_private(tmp_path / "typo.pass", PASSPHRASE + "x")
    # 'main' refuses the typo and 'recovery' unlocks; the rotation must not re-wrap 'main'
    # under the typo: 'main' has to prove its passphrase first, so the rotation is refused.
    line = account.error(
        "keys", "rotate", "--master", code=4, env={**account.env, FILE_VARIABLE: str(typo)}
    )
    assert line == "wrong passphrase for 'alice', or the wrapped key was altered"
    main_only = write_config(tmp_path / "main.toml", account.data_dir, passphrase_table("main"))
    result = subprocess.run(
        [*cli_command(), "--config", str(main_only), "get", "default", "k"],
        env=account.env,  # the real passphrase
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"value"


def test_ls_shows_each_key_once_whatever_characters_it_holds(account: Account) -> None:
    account.run("put", "default", "real\nfake-admin", stdin=b"v")
    account.run("put", "default", "\x1b]0;pwned\x07title", stdin=b"v")
    lines = account.text("ls", "default").splitlines()
    assert len(lines) == 2
    assert all("\x1b" not in line for line in lines)
