"""The ``strongroom`` command with the master key wrapped by a SoftHSM2 token.

The CLI runs in subprocesses that load SoftHSM with the test session's
``SOFTHSM2_CONF`` (``tests/softhsm.py``); pointing one at an empty token
directory is the token pulled out.  Two configs share one data directory:
``both`` wraps the master key with ``[key_providers.hsm] use = "pkcs11"``
(PIN from a ``file:``) and a passphrase recovery provider, ``hsm_only``
configures the token alone.  What the token holds is checked from this
process.  The helpers come from ``test_cli_data.py``.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass
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

from softhsm import SoftHsm, softhsm_session
from strongroom_plugins.providers.pkcs11 import RECOVERY


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    return softhsm_session(tmp_path_factory)


def hsm_table(hsm: SoftHsm, key_label: str, pin_file: Path) -> str:
    return (
        "[key_providers.hsm]\n"
        'use = "pkcs11"\n'
        f"library = {toml_string(hsm.library)}\n"
        f"token_label = {toml_string(hsm.token)}\n"
        f"key_label = {toml_string(key_label)}\n"
        f"pin = {toml_string(f'file:{pin_file}')}\n"
    )


def accounts(root: Path, hsm: SoftHsm, *, pin: str | None = None) -> tuple[Account, Account, str]:
    """``(both, hsm_only, key_label)``: account ``alice`` under two configs sharing a data dir."""
    data_dir = root / "data"
    template = f"cli-{uuid.uuid4().hex[:10]}:{{account}}"
    table = hsm_table(hsm, template, hsm.pin_file(root, pin))
    recovery = write_private(root / "recovery.pass", PASSPHRASE)
    both = write_config(root / "both.toml", data_dir, table, passphrase_table("recovery", recovery))
    hsm_only = write_config(root / "hsm.toml", data_dir, table, stores=("default",))
    env = clean_environ(**hsm.env)
    return Account(both, data_dir, env), Account(hsm_only, data_dir, env), template


def key_ids(hsm: SoftHsm, label: str) -> list[bytes]:
    with hsm.session() as session:
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        return sorted(bytes(key[Attribute.ID]) for key in session.get_objects(template))


def hsm_blob(account: Account) -> bytes:
    record = json.loads(account.keys_file.read_bytes())
    return base64.b64decode(record["wraps"]["hsm"]["blob"])


def test_init_put_get_and_rotation_with_the_pin_from_a_file(hsm: SoftHsm, tmp_path: Path) -> None:
    both, hsm_only, template = accounts(tmp_path, hsm)
    label = template.format(account="alice")
    init = both.text("init").splitlines()
    assert init[1] == "master key wrapped by: hsm (pkcs11), recovery (passphrase)"
    (first,) = key_ids(hsm, label)
    raw = both.keys_file.read_bytes()
    assert hsm.pin.encode() not in raw
    assert hsm_blob(both)[:4] == b"SRHW"
    assert hsm_blob(both)[6:18] == first

    hsm_only.run("put", "default", "k", stdin=b"value")  # the token alone unlocks
    assert hsm_only.run("get", "default", "k").stdout == b"value"

    rotated = hsm_only.text("keys", "rotate", "--provider", "hsm")
    assert rotated == "master key wrapped afresh for provider 'hsm'\n"
    old, new = key_ids(hsm, label)
    assert old == first
    assert hsm_blob(both)[6:18] == new
    assert hsm_only.run("get", "default", "k").stdout == b"value"
    assert key_ids(hsm, label) == [new]  # the first unlock through the new key shreds the old

    with hsm.session() as session:  # the key record's generation sits beside the key
        (kept,) = session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})
        assert int(kept[Attribute.VALUE]) == json.loads(both.keys_file.read_bytes())["generation"]

    wiped = both.text("wipe", "--yes")
    assert wiped.startswith("account 'alice' wiped: keys destroyed, provider roots erased")
    assert key_ids(hsm, label) == []


def test_a_pulled_token_a_wrong_pin_or_a_deleted_key_changes_nothing(
    hsm: SoftHsm, tmp_path: Path
) -> None:
    both, hsm_only, template = accounts(tmp_path, hsm)
    both.run("init")
    hsm_only.run("put", "default", "k", stdin=b"value")
    before = snapshot(both.data_dir)

    pulled = {**hsm_only.env, **hsm.removed_env()}
    wrong_pin = write_config(
        tmp_path / "wrong.toml",
        both.data_dir,
        hsm_table(hsm, template, hsm.pin_file(tmp_path, "0000-not-it")),
        stores=("default",),
    )
    removed, removed_put, refused, recovered = concurrently(
        lambda: hsm_only.error("get", "default", "k", code=4, env=pulled),
        lambda: hsm_only.error("put", "default", "k", stdin=b"new", code=4, env=pulled),
        lambda: Account(wrong_pin, both.data_dir, hsm_only.env).error(
            "get", "default", "k", code=4
        ),
        lambda: both.run("get", "default", "k", env=pulled).stdout,  # the passphrase opens it
    )
    assert removed.startswith(f"no token labelled {hsm.token!r} is present in {hsm.library}")
    assert removed.endswith(f"this provider's root is unusable: {RECOVERY}")
    assert removed_put == removed
    assert refused == f"token {hsm.token!r} refused the PIN"
    assert recovered == b"value"
    assert snapshot(both.data_dir) == before

    label = template.format(account="alice")
    with hsm.session() as session:
        for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            if key[Attribute.LABEL] == label:
                assert isinstance(key, pkcs11.SecretKey)
                key.destroy()
    deleted = hsm_only.error("get", "default", "k", code=4)
    assert deleted == (
        f"token {hsm.token!r} holds no key labelled {label!r}: it was deleted or never made "
        f"there; this provider's root is unusable: {RECOVERY}"
    )
    assert both.run("get", "default", "k").stdout == b"value"
    assert snapshot(both.data_dir) == before
