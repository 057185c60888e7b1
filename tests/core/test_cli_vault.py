"""The ``strongroom`` command with the master key wrapped by OpenBao Transit.

A real OpenBao dev server (``tests/openbao.py``) serves the module; tests
that seal or stop a server start their own.  As in ``test_cli_keyring.py``,
two configs share one data directory: ``both`` wraps the master key with
``[key_providers.vault]`` and a passphrase recovery provider, ``vault_only``
configures Vault alone, to show what happens when Vault cannot answer.  The
CLI runs in subprocesses; what Vault holds is checked with an administrator's
client.  Helpers come from ``test_cli_data.py``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
from test_cli_data import (
    PASSPHRASE,
    Account,
    clean_environ,
    concurrently,
    passphrase_table,
    snapshot,
    toml_string,
    write_config,
    write_private,
)

from openbao import ROOT_TOKEN, OpenBao, running_openbao

TOKEN_VARIABLE = "VAULT_TOKEN_FOR_STRONGROOM_TESTS"  # noqa: S105 - a variable name


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        yield server


def vault_table(bao: OpenBao, prefix: str) -> str:
    return (
        "[key_providers.vault]\n"
        'use = "vault"\n'
        f"url = {toml_string(bao.url)}\n"
        f'token = "env:{TOKEN_VARIABLE}"\n'
        f"key_prefix = {toml_string(prefix)}\n"
        f"generation_path = {toml_string('gen/' + prefix.rstrip('-'))}\n"
    )


def accounts(bao: OpenBao, root: Path, token: str = ROOT_TOKEN) -> tuple[Account, Account, str]:
    """``(both, vault_only, transit key name)`` for account ``alice`` sharing ``root / "data"``."""
    prefix = f"c{uuid.uuid4().hex[:10]}-"
    data_dir = root / "data"
    recovery = write_private(root / "recovery.pass", PASSPHRASE)
    table = vault_table(bao, prefix)
    both = write_config(
        root / "both.toml",
        data_dir,
        table,
        passphrase_table("recovery", recovery),
        stores=("default",),
    )
    vault_only = write_config(root / "vault.toml", data_dir, table, stores=("default",))
    env = clean_environ(**{TOKEN_VARIABLE: token})
    return Account(both, data_dir, env), Account(vault_only, data_dir, env), f"{prefix}alice"


def vault_wrap(account: Account) -> bytes:
    return base64.b64decode(account.record()["wraps"]["vault"]["blob"])


def transit_key(bao: OpenBao, name: str) -> dict[str, Any]:
    data: dict[str, Any] = bao.admin().secrets.transit.read_key(name)["data"]
    return data


def test_init_put_rotate_the_provider_and_get(bao: OpenBao, tmp_path: Path) -> None:
    both, vault_only, name = accounts(bao, tmp_path)
    init = both.text("init").splitlines()
    assert init[1] == "master key wrapped by: vault (vault), recovery (passphrase)"
    first = vault_wrap(both)
    assert first[:4] == b"SRVT"
    assert transit_key(bao, name)["latest_version"] == 1
    vault_only.run("put", "default", "k", stdin=b"value")  # no passphrase involved
    master_version = both.record()["master_version"]

    rotated = vault_only.text("keys", "rotate", "--provider", "vault")
    assert rotated == "master key wrapped afresh for provider 'vault'\n"
    assert transit_key(bao, name)["latest_version"] == 2
    second = vault_wrap(both)
    assert second[6:10] == (2).to_bytes(4, "big")  # re-wrapped to the new Transit version
    assert both.record()["master_version"] == master_version  # the master key itself unchanged
    assert vault_only.run("get", "default", "k").stdout == b"value"

    # The operator retires version 1: the account still opens, a copy of the old wrap does not.
    bao.admin().secrets.transit.update_key_configuration(name, min_decryption_version=2)
    assert vault_only.run("get", "default", "k").stdout == b"value"
    record = both.record()
    record["wraps"]["vault"]["blob"] = base64.b64encode(first).decode()
    both.keys_file.write_text(json.dumps(record))  # only the wrap swapped: the MAC still holds
    line = vault_only.error("get", "default", "k", code=4)
    assert line.startswith("the provider's key is unusable: Transit key ")
    assert "no longer decrypts its version 1 (min_decryption_version" in line
    assert line.endswith("unlock with another provider of the account")


def test_each_vault_failure_is_one_line_exit_4_and_the_passphrase_still_unlocks(
    bao: OpenBao, tmp_path: Path
) -> None:
    token = bao.token()
    (tmp_path / "revoked").mkdir()
    (tmp_path / "deleted").mkdir()
    revoked_both, revoked_only, _ = accounts(bao, tmp_path / "revoked", token)
    deleted_both, deleted_only, name = accounts(bao, tmp_path / "deleted")
    for both, only in ((revoked_both, revoked_only), (deleted_both, deleted_only)):
        both.run("init")
        only.run("put", "default", "k", stdin=b"value")
    bao.admin().auth.token.revoke(token)
    transit = bao.admin().secrets.transit
    transit.update_key_configuration(name, deletion_allowed=True)
    transit.delete_key(name)
    before = [snapshot(revoked_both.data_dir), snapshot(deleted_both.data_dir)]

    revoked, deleted, recovered_a, recovered_b = concurrently(
        lambda: revoked_only.error("get", "default", "k", code=4),
        lambda: deleted_only.error("get", "default", "k", code=4),
        lambda: revoked_both.run("get", "default", "k").stdout,
        lambda: deleted_both.run("get", "default", "k").stdout,
    )
    assert revoked.startswith(f"Vault at {bao.url} refused the token (permission denied)")
    assert token not in revoked
    assert deleted == (
        f"the provider's key is unusable: Transit key transit/{name} on Vault at {bao.url} no "
        "longer exists (it was deleted), so this wrap cannot be opened through it; unlock with "
        "another provider of the account"
    )
    assert recovered_a == recovered_b == b"value"
    assert [snapshot(revoked_both.data_dir), snapshot(deleted_both.data_dir)] == before


def test_a_sealed_then_stopped_vault_is_named_and_changes_nothing(tmp_path: Path) -> None:
    with running_openbao() as own:
        both, vault_only, _ = accounts(own, tmp_path)
        both.run("init")
        vault_only.run("put", "default", "k", stdin=b"value")
        own.seal()
        before = snapshot(both.data_dir)
        sealed, put, recovered = concurrently(
            lambda: vault_only.error("get", "default", "k", code=4),
            lambda: vault_only.error("put", "default", "k", stdin=b"new", code=4),
            lambda: both.run("get", "default", "k").stdout,
        )
        assert (
            sealed
            == put
            == (f"Vault at {own.url} is sealed; unseal it, or unlock with another provider")
        )
        assert recovered == b"value"
        own.stop()
        closed = vault_only.error("get", "default", "k", code=4)
        assert closed == f"Vault at {own.url} is unreachable (connection refused)"
        assert both.run("get", "default", "k").stdout == b"value"
        assert snapshot(both.data_dir) == before


def test_an_older_key_record_is_refused_while_vault_keeps_its_generation(
    bao: OpenBao, tmp_path: Path
) -> None:
    both, vault_only, name = accounts(bao, tmp_path)
    both.run("init")
    vault_only.run("put", "default", "k", stdin=b"value")

    def kept() -> int:
        path = f"gen/{name.removesuffix('-alice')}/{name}"
        answer = bao.admin().secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
        return int(answer["data"]["data"]["generation"])

    assert kept() == both.record()["generation"]
    backup = both.keys_file.read_bytes()
    vault_only.run("keys", "rotate", "--purpose", "store:default")
    assert kept() == both.record()["generation"] > json.loads(backup)["generation"]

    both.keys_file.write_bytes(backup)  # an older copy put back: the rotation undone
    for account in (vault_only, both):  # whichever provider unwraps, Vault's generation refuses
        line = account.error("get", "default", "k", code=3)
        assert "older than provider 'vault' last saw" in line

    both.run("wipe", "--yes")  # erases the Transit key and the kept generation
    try:
        left = bao.admin().secrets.transit.list_keys()["data"]["keys"]
    except hvac.exceptions.InvalidPath:  # Vault answers 404 when no key is left at all
        left = []
    assert name not in left


def test_plain_http_to_another_host_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    table = (
        '[key_providers.vault]\nuse = "vault"\nurl = "http://vault.example.com:8200"\n'
        f'token = "env:{TOKEN_VARIABLE}"\n'
    )
    config = write_config(tmp_path / "vault.toml", tmp_path / "data", table, stores=("default",))
    account = Account(config, tmp_path / "data", clean_environ(**{TOKEN_VARIABLE: "s.secret"}))
    line = account.error("init", code=2)
    assert line == (
        f"{config}: [key_providers.vault] key 'url': plain http:// is refused except to "
        "loopback; use https://"
    )
    assert not account.data_dir.exists()
