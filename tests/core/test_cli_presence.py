"""The CLI's user-presence check, end to end: a ``presence`` store asks on the terminal.

The account unlocks with a passphrase from a file; the store ``vault`` has
``policy = "presence"``, so its first use asks, through the
``strongroom_request_user_presence`` hook the CLI registers, for the
passphrase again on the terminal.  ``notes`` has no policy and never asks.
"""

from __future__ import annotations

from pathlib import Path

from test_cli_data import (
    FILE_VARIABLE,
    PASSPHRASE,
    WRONG_PASSPHRASE,
    Account,
    clean_environ,
    cli_command,
    passphrase_table,
    write_private,
)

from terminal import on_a_terminal

PROMPT = b"Confirm you are present (using the store:vault keyset): passphrase for 'alice' (main): "


def presence_account(root: Path) -> Account:
    config = root / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{root / "data"}"\naccount = "alice"\n'
        + passphrase_table("main")
        + '[stores.vault]\nuse = "files"\npolicy = "presence"\n[stores.notes]\nuse = "files"\n'
    )
    env = clean_environ(**{FILE_VARIABLE: str(write_private(root / "passphrase", PASSPHRASE))})
    account = Account(config, root / "data", env)
    account.run("init")
    return account


def on_terminal(account: Account, *args: str, typed: str) -> tuple[int, bytes]:
    argv = [*cli_command(), "--config", str(account.config), *args]
    with on_a_terminal(argv, account.env) as (child, terminal):
        terminal.expect(PROMPT)
        terminal.type(typed)
        code = child.wait(timeout=60)
        terminal.expect(b"\n")  # the rest of what it printed, if anything
        return code, terminal.transcript


def test_a_presence_store_asks_for_the_passphrase_on_the_terminal(tmp_path: Path) -> None:
    account = presence_account(tmp_path)
    account.run("put", "notes", "k", stdin=b"no presence needed")  # never asks

    code, transcript = on_terminal(account, "put", "vault", "k", "/dev/null", typed=PASSPHRASE)
    assert code == 0, transcript
    assert PASSPHRASE.encode() not in transcript  # typed without echo

    code, transcript = on_terminal(account, "get", "vault", "k", typed=WRONG_PASSPHRASE)
    assert code == 4
    assert b"user presence was declined (using the store:vault keyset)" in transcript


def test_without_a_terminal_a_presence_store_is_refused(tmp_path: Path) -> None:
    account = presence_account(tmp_path)
    refused = account.error("put", "vault", "k", stdin=b"value", code=4)
    assert refused == (
        "using the store:vault keyset needs user presence, and nothing could ask for it "
        "(no presence plugin answered, and there is no terminal)"
    )
    account.run("get", "notes", "missing", code=1)  # the store with no policy still answers
