"""``strongroom purge`` and the ``retention`` key, run as a user runs them: in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli_data import Account, make_account, passphrase_table, toml_string
from test_retention import age

DAY = 86400.0


def with_stores(account: Account, *tables: str) -> Account:
    """``account``'s config with the given store tables instead of the default ones."""
    head = f'[strongroom]\ndata_dir = {toml_string(account.data_dir)}\naccount = "alice"\n'
    account.config.write_text("\n".join([head, passphrase_table("main"), *tables]))
    return account


VAULT = '[stores.vault]\nuse = "files"\n'
CACHE = '[stores.cache]\nuse = "files"\nretention = "1d"\n'


def test_purge_deletes_what_is_past_a_store_s_retention_and_nothing_else(
    tmp_path: Path,
) -> None:
    account = with_stores(make_account(tmp_path), VAULT, CACHE)
    account.run("init")
    for store in ("vault", "cache"):
        account.run("put", store, "old", stdin=b"old value")
        account.run("put", store, "big", "--blob", stdin=b"blob value" * 1000)
    for store in ("vault", "cache"):
        age(account.directory / "stores" / store, 2 * DAY)
    account.run("put", "cache", "fresh", stdin=b"fresh value")  # opening it purged already
    assert account.json("ls", "cache")["keys"] == ["fresh"]

    account.run("put", "cache", "old", stdin=b"again")
    age(account.directory / "stores" / "cache", 2 * DAY)
    assert account.text("purge") == "cache: purged 2 record(s) older than 1d\n"
    assert json.loads(account.run("purge", "cache", "--json").stdout) == {"purged": {"cache": 0}}
    assert account.json("ls", "cache")["keys"] == []
    assert account.json("ls", "vault")["keys"] == ["big", "old"]
    assert account.text("get", "vault", "old") == "old value"


def test_purge_refuses_a_store_without_retention_or_not_configured(tmp_path: Path) -> None:
    account = with_stores(make_account(tmp_path), VAULT, CACHE)
    account.run("init")
    assert account.error("purge", "vault", code=2) == (
        "store 'vault' has no retention; set retention in [stores.vault]"
    )
    assert account.error("purge", "cache", "nowhere", code=2) == (
        "no store 'nowhere' is configured (configured: vault, cache)"
    )
    with_stores(account, VAULT)
    assert account.text("purge") == "no store has a retention; nothing to purge\n"


def test_a_bad_retention_stops_every_command(tmp_path: Path) -> None:
    account = with_stores(make_account(tmp_path), VAULT, CACHE.replace('"1d"', '"0d"'))
    for command in (("purge",), ("ls", "vault"), ("status",)):
        assert account.error(*command, code=2) == (
            f"{account.config}: [stores.cache] key 'retention': expected a duration: "
            'a positive whole number and a unit s, m, h or d, such as "30d"'
        )
    assert not account.data_dir.exists()
