"""Changing a passphrase through ``strongroom keys rotate --provider``, with no terminal.

The CLI runs in subprocesses with the passphrases in private files named by
``STRONGROOM_PASSPHRASE_FILE`` (the current one, to unlock) and
``STRONGROOM_NEW_PASSPHRASE_FILE`` (the new one, read only for the change).
The helpers come from ``test_cli_data.py``.
"""

from __future__ import annotations

from pathlib import Path

from test_cli_data import (
    FILE_VARIABLE,
    PASSPHRASE,
    WRONG_PASSPHRASE,
    Account,
    clean_environ,
    concurrently,
    passphrase_table,
    write_config,
    write_private,
)

NEW_FILE_VARIABLE = "STRONGROOM_NEW_PASSPHRASE_FILE"
NEW_PASSPHRASE = "alice's next passphrase 7a2e"  # noqa: S105 - a test's own
REFUSED = "wrong passphrase for 'alice', or the wrapped key was altered"


def test_a_passphrase_changes_non_interactively_and_only_the_new_one_unlocks(
    tmp_path: Path,
) -> None:
    """And, as docs/config.md warns, the old record with the old passphrase still opens."""
    old = write_private(tmp_path / "old.pass", PASSPHRASE)
    new = write_private(tmp_path / "new.pass", NEW_PASSPHRASE)
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "strongroom.toml",
        data_dir,
        passphrase_table("recovery"),
        stores=("default",),
    )
    with_old = clean_environ(**{FILE_VARIABLE: str(old)})
    with_new = clean_environ(**{FILE_VARIABLE: str(new)})
    account = Account(config, data_dir, with_old)
    account.run("init")
    account.run("put", "default", "k", stdin=b"value")

    # Without a new passphrase the change is refused, not made with the old one.
    before = account.keys_file.read_bytes()
    line = account.error("keys", "rotate", "--provider", "recovery", code=4)
    assert line.startswith(f"no new passphrase available: set {NEW_FILE_VARIABLE} or ")
    assert account.keys_file.read_bytes() == before

    changing = {**with_old, NEW_FILE_VARIABLE: str(new)}
    done = account.run("keys", "rotate", "--provider", "recovery", env=changing).stdout.decode()
    assert done == "master key wrapped afresh for provider 'recovery'\n"
    assert account.record()["master_version"] == 1  # the same master key, wrapped anew

    with_wrong = clean_environ(
        **{FILE_VARIABLE: str(write_private(tmp_path / "w", WRONG_PASSPHRASE))}
    )
    value, refused_old, refused_wrong = concurrently(
        lambda: account.run("get", "default", "k", env=with_new).stdout,
        lambda: account.error("get", "default", "k", code=4),
        lambda: account.error("get", "default", "k", code=4, env=with_wrong),
    )
    assert value == b"value"
    assert refused_old == REFUSED
    assert refused_wrong == REFUSED
    assert NEW_PASSPHRASE not in done + line + refused_old

    # The limit: the change kept the master key, so the record from before it,
    # put back, opens with the old passphrase, data written afterwards included.
    account.run("put", "default", "later", stdin=b"written after the change", env=with_new)
    account.keys_file.write_bytes(before)
    assert account.run("get", "default", "later").stdout == b"written after the change"


def test_a_change_with_a_master_rotation_leaves_an_old_record_behind(tmp_path: Path) -> None:
    """``keys rotate --provider NAME --master``: data written afterwards is out of its reach."""
    old = write_private(tmp_path / "old.pass", PASSPHRASE)
    new = write_private(tmp_path / "new.pass", NEW_PASSPHRASE)
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "strongroom.toml", data_dir, passphrase_table("recovery"), stores=("default",)
    )
    with_old = clean_environ(**{FILE_VARIABLE: str(old)})
    with_new = clean_environ(**{FILE_VARIABLE: str(new)})
    account = Account(config, data_dir, with_old)
    account.run("init")
    account.run("put", "default", "k", stdin=b"value")
    before = account.keys_file.read_bytes()

    changing = {**with_old, NEW_FILE_VARIABLE: str(new)}
    command = ("keys", "rotate", "--provider", "recovery", "--master")
    done = account.run(*command, env=changing).stdout.decode().splitlines()
    assert done == [
        "master key is now version 2, wrapped afresh for provider 'recovery'",
        "files: new primary version 2",
        "store:default: new primary version 2",
        "run 'strongroom keys reencrypt' to move older data to the new keys",
    ]
    assert account.record()["master_version"] == 2
    assert account.error("get", "default", "k", code=4) == REFUSED  # the old passphrase
    assert account.run("get", "default", "k", env=with_new).stdout == b"value"

    account.run("put", "default", "later", stdin=b"written after the change", env=with_new)
    account.keys_file.write_bytes(before)  # the old record, with the old passphrase
    line = account.error("get", "default", "later", code=3)
    assert line == "store 'default': an object names a key version the store never had"
    assert "combine" in account.error(*command[:2], "--purpose", "files", "--master", code=2)


def test_a_command_reads_the_passphrase_once(tmp_path: Path) -> None:
    """Unlocking and then rotating the master key is one command: one read of the passphrase."""
    counter = tmp_path / "reads"
    secret = write_private(tmp_path / "passphrase", PASSPHRASE)
    script = write_private(tmp_path / "ask.sh", f"#!/bin/sh\necho x >> {counter}\ncat {secret}")
    script.chmod(0o700)
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "strongroom.toml", data_dir, passphrase_table("main"))
    account = Account(config, data_dir, clean_environ(STRONGROOM_PASSPHRASE_COMMAND=str(script)))
    account.run("init")
    counter.unlink()
    account.run("keys", "rotate", "--master")
    assert counter.read_text() == "x\n"
    account.run("keys", "rotate", "--master")
    assert counter.read_text() == "x\nx\n"
