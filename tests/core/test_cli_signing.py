"""``strongroom signing key --expose-key``: provisioning the server with a device's MAC key.

What it prints must verify the device's signed requests; it needs its flag,
warns, is audited without the key, and follows a rotation to a new key id.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from test_cli_data import (
    FILE_VARIABLE,
    PASSPHRASE,
    Account,
    clean_environ,
    passphrase_table,
    write_config,
    write_private,
)

from conftest import MakeDistribution
from strongroom import Strongroom, load_config
from strongroom.signing.signer import sign_request
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache

RECORDER = """
import json, os
from strongroom.hookspecs import hookimpl

@hookimpl
def strongroom_audit_event(event):
    with open(os.environ["AUDIT_OUT"], "a") as out:
        out.write(json.dumps({"action": event.action, "details": dict(event.details)}) + "\\n")
"""


@pytest.fixture
def account(tmp_path: Path) -> Account:
    data_dir = tmp_path / "data"
    secret = write_private(tmp_path / "passphrase", PASSPHRASE)
    config = write_config(
        tmp_path / "strongroom.toml",
        data_dir,
        passphrase_table("main"),
        '[signing]\nkey_id = "phone-1"\n',
    )
    account = Account(config, data_dir, clean_environ(**{FILE_VARIABLE: str(secret)}))
    account.run("init")
    return account


def printed(account: Account, *extra: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        account.run("signing", "key", "--expose-key", "--json", *extra).stdout
    )
    return data


def test_the_key_is_printed_only_with_its_flag(account: Account) -> None:
    result = account.run("signing", "key", code=2)
    assert "add --expose-key to confirm" in result.stderr.decode()
    assert result.stdout == b""


def test_init_creates_the_signing_keyset(account: Account) -> None:
    assert "signing" in account.record()["keysets"]


def test_the_printed_key_verifies_the_devices_requests_and_it_is_audited(
    account: Account, tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "audit-recorder",
        entry_points={"strongroom.plugins": {"recorder": "audit_recorder"}},
        modules={"audit_recorder": RECORDER},
    )
    heard = tmp_path / "audit.jsonl"
    env = {**account.env, "PYTHONPATH": os.environ["PYTHONPATH"], "AUDIT_OUT": str(heard)}
    result = account.run("signing", "key", "--expose-key", env=env)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "key id: phone-1.v1"
    key = base64.b64decode(lines[1].removeprefix("key:").strip(), validate=True)
    assert len(key) == 32
    assert "the request-signing key phone-1.v1 is exposed" in result.stderr.decode()
    assert "strongroom keys rotate --purpose signing" in result.stderr.decode()

    events = [json.loads(line) for line in heard.read_text().splitlines()]
    exposed = [event for event in events if event["action"] == "key.exposed"]
    assert exposed == [
        {
            "action": "key.exposed",
            "details": {"purpose": "signing", "version": "1", "key_id": "phone-1.v1"},
        }
    ]
    assert lines[1].split()[-1] not in heard.read_text()

    verifier = RequestVerifier(KeyRing({"phone-1.v1": key}), MemoryNonceCache())
    config = load_config(account.config, environ={})
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.keys.unlock()
        headers = stack.hook.strongroom_sign_request(
            request=SyncRequest("POST", "/v1/items?x=1", b"body")
        )[0]
    assert verifier.verify("POST", "/v1/items?x=1", headers, b"body").key_id == "phone-1.v1"
    wrong = sign_request(bytes(32), "phone-1.v1", "POST", "/v1/items", b"", now=0)
    assert wrong["Strongroom-Signature"] != headers["Strongroom-Signature"]


def test_a_rotation_gives_a_new_key_id_and_old_versions_stay_printable(account: Account) -> None:
    before = printed(account)
    account.run("keys", "rotate", "--purpose", "signing")
    after = printed(account)
    assert (before["key_id"], after["key_id"]) == ("phone-1.v1", "phone-1.v2")
    assert before["key"] != after["key"]
    assert printed(account, "--key-version", "1") == before


def test_without_a_signing_table_it_says_so(account: Account) -> None:
    text = account.config.read_text().replace('[signing]\nkey_id = "phone-1"\n', "")
    account.config.write_text(text)
    assert "no [signing] table" in account.error("signing", "key", "--expose-key", code=2)
