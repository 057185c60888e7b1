"""The key record through the CLI: edits refused, keysets only from init, versions in use kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_data import (
    Account,
    make_account,
    object_versions,
    passphrase_table,
    snapshot,
    write_config,
)


@pytest.fixture
def account(tmp_path: Path) -> Account:
    made = make_account(tmp_path)
    made.run("init")
    return made


ALTERED = "the key record was altered (its MAC does not verify); nothing in it was used"


def test_an_edited_record_exits_3_and_changes_nothing(account: Account) -> None:
    account.run("put", "default", "k", stdin=b"value")
    account.run("keys", "rotate", "--purpose", "files")
    data = account.record()
    data["keysets"]["files"]["primary"] = 1  # new files would go to the old key
    account.keys_file.write_text(json.dumps(data))
    before = snapshot(account.data_dir)
    for command in (("get", "default", "k"), ("keys", "rotate", "--purpose", "files")):
        line = account.error(*command, code=3)
        assert line.endswith(
            "the key record was altered (its MAC does not verify); nothing in it was used"
        )
    assert snapshot(account.data_dir) == before


def test_wipe_destroys_an_account_whose_record_is_garbage(account: Account) -> None:
    account.run("put", "default", "k", stdin=b"value")
    account.keys_file.write_text("{garbage")
    result = account.run("wipe", "--yes")
    assert "erasing the roots of every configured provider instead" in result.stderr.decode()
    assert not account.directory.exists()


def test_keysets_are_made_by_init_only_and_purposes_are_checked(account: Account) -> None:
    before = account.record()["keysets"].keys()
    for purpose, message in (
        ("store:NOPE/../x", "is not a keyset purpose"),
        ("store:default:names", "is never rotated"),
    ):
        assert message in account.error("keys", "rotate", "--purpose", purpose, code=2)
    line = account.error("keys", "rotate", "--purpose", "store:ghost", code=4)
    assert line.startswith("account 'alice' has no store:ghost keyset")
    assert account.record()["keysets"].keys() == before


def test_a_store_added_after_init_and_a_master_rotation_gets_its_keysets_from_init(
    account: Account,
) -> None:
    account.run("keys", "rotate", "--master")
    tables = passphrase_table("main")
    write_config(account.config, account.data_dir, tables, stores=("default", "notes", "late"))
    line = account.error("put", "late", "k", stdin=b"v", code=4)
    assert "no store:late" in line
    assert "'strongroom init'" in line
    assert account.text("init") == "created keysets: store:late, store:late:names\n"
    account.run("put", "late", "k", stdin=b"late value")
    account.run("keys", "rotate", "--master")
    assert account.text("get", "late", "k") == "late value"
    assert "every configured store has its keysets" in account.error("init", code=2)


def test_retire_and_destroy_refuse_versions_still_in_use(account: Account) -> None:
    account.run("put", "default", "k", stdin=b"value")
    account.run("keys", "rotate", "--purpose", "store:default")
    before = account.keys_file.read_bytes()
    line = account.error("keys", "destroy", "store:default", "1", code=2)
    assert line.startswith("1 object(s) of store:default are still under key version 1")
    line = account.error("keys", "retire", "files", "1", code=2)  # would be primary
    assert "primary" in line
    account.run("keys", "rotate", "--purpose", "files")
    line = account.error("keys", "destroy", "files", "1", code=2)
    assert line.startswith("cannot count what files key version 1 still encrypts")
    assert (
        json.loads(before)["keysets"]["store:default"]
        == account.record()["keysets"]["store:default"]
    )
    account.run("keys", "destroy", "files", "1", "--force")
    account.run("keys", "reencrypt")
    assert set(object_versions(account).values()) == {2}
    account.run("keys", "destroy", "store:default", "1")
    assert account.text("get", "default", "k") == "value"


def test_a_forced_destroy_leaves_objects_that_can_be_listed_and_purged(account: Account) -> None:
    account.run("put", "default", "old", stdin=b"old value")
    account.run("keys", "rotate", "--purpose", "store:default")
    account.run("put", "default", "new", stdin=b"new value")
    account.run("keys", "destroy", "store:default", "1", "--force")
    assert account.text("ls", "default") == "new\n"  # listing goes on without the shredded one
    found = account.json("keys", "unreadable", "default")["unreadable"]["default"]
    assert [item["version"] for item in found] == [1]
    account.run("keys", "reencrypt")
    assert account.text("keys", "unreadable", "--purge") == (
        "default: deleted 1 unreadable object(s)\nnotes: deleted 0 unreadable object(s)\n"
    )
    assert account.json("keys", "unreadable")["unreadable"] == {"default": [], "notes": []}
    assert set(object_versions(account).values()) == {2}


def test_a_blocked_aes_gcm_plugin_does_not_stop_the_core_holding_keys(tmp_path: Path) -> None:
    account = make_account(tmp_path)
    text = account.config.read_text()
    account.config.write_text(
        text.replace(
            "[strongroom]",
            '[plugins]\nblock = ["aes-256-gcm"]\n\n[cipher_suite]\nuse = "chacha20-poly1305"\n\n'
            "[strongroom]",
            1,
        )
    )
    account.run("config", "check")
    account.run("init")
    account.run("put", "default", "k", stdin=b"value")
    account.run("keys", "rotate", "--master")
    assert account.text("get", "default", "k") == "value"
