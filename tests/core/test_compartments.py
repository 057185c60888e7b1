"""Compartments: each store its own keys and retention, each account its own namespace.

A config naming ``vault`` and ``cache`` gives each its own data keyset
(``store:<name>``) and name keyset; these tests prove that nothing done to
one (rotating, destroying, purging, a file moved across) reaches the other,
and that wiping one account on a data directory leaves another readable.
The stacks are real (passphrase provider, files stores).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from test_cli_data import Account, concurrently, make_account
from test_retention import age, compartments, make_config

from strongroom._stack import Strongroom
from strongroom.errors import IntegrityError
from strongroom.formats import peek_key_version

DAY = 86400.0


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {
        str(path.relative_to(root)): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in root.rglob("*")
        if path.is_file()
    }


def record_file(directory: Path) -> Path:
    (found,) = (p for p in (directory / "records").rglob("*") if len(p.name) == 64)
    return found


def test_each_store_encrypts_under_keys_of_its_own(tmp_path: Path) -> None:
    with Strongroom(compartments(tmp_path)) as stack:
        stack.initialise()
        vault, cache = stack.store("vault"), stack.store("cache")
        keys = stack.keys
        materials = {
            purpose: bytes(keys.data_key(purpose).material.view())
            for purpose in ("store:vault", "store:cache", "store:vault:names", "store:cache:names")
        }
        assert len(set(materials.values())) == 4
        vault.put("k", b"vault's value")
        cache.put("k", b"cache's value")
        vault_file, cache_file = (
            record_file(vault.binding.directory),
            record_file(cache.binding.directory),
        )
        assert vault_file.name != cache_file.name  # names are keyed per store too
        shutil.copyfile(vault_file, cache_file)  # vault's record where cache keeps "k"
        with pytest.raises(IntegrityError):
            cache.get("k")
        assert vault.get("k") == b"vault's value"


def test_rotating_and_destroying_one_store_s_key_leaves_the_other_readable(
    tmp_path: Path,
) -> None:
    config = compartments(tmp_path)
    with Strongroom(config) as stack:
        stack.initialise()
        stack.store("vault").put("v", b"kept")
        stack.store("cache").put("c", b"re-keyed")
        stack.keys.rotate("store:cache")
        list(stack.store("cache").reencrypt())
        stack.keys.destroy("store:cache", 1)  # nothing under it any more: not forced
        vault_file = record_file(stack.store("vault").binding.directory)
    with Strongroom(config) as stack:
        stack.keys.unlock()
        assert stack.store("vault").get("v") == b"kept"
        assert stack.store("cache").get("c") == b"re-keyed"
        assert peek_key_version(vault_file.read_bytes()[:16]) == 1
        assert stack.keys.primary_version("store:vault") == 1
        stack.keys.rotate("store:vault")
        stack.keys.destroy("store:vault", 1, force=True)  # the vault's old data is shredded
        assert stack.store("cache").get("c") == b"re-keyed"


def test_retention_on_cache_never_touches_vault(tmp_path: Path) -> None:
    config = compartments(tmp_path, retention="1h")
    with Strongroom(config) as stack:
        stack.initialise()
        for name in ("vault", "cache"):
            stack.store(name).put("old", b"1")
            stack.store(name).put_blob("old blob", [b"2"])
        vault_dir = stack.store("vault").binding.directory
        cache_dir = stack.store("cache").binding.directory
    age(vault_dir, 10 * DAY)
    age(cache_dir, 10 * DAY)
    before = snapshot(vault_dir)
    with Strongroom(config) as stack:
        stack.keys.unlock()
        assert list(stack.store("cache").keys()) == []
        assert stack.purge_expired("cache") == 0
        assert snapshot(vault_dir) == before
        assert list(stack.store("vault").keys()) == ["old", "old blob"]
        assert stack.store("vault").get("old") == b"1"


def test_wiping_one_account_leaves_another_s_keys_and_data_readable(tmp_path: Path) -> None:
    """``wipe --account alice`` and ``bob`` on the same data directory: bob keeps everything."""
    alice = make_account(tmp_path)
    concurrently(lambda: alice.run("init"), lambda: alice.run("init", "--account", "bob"))
    bob = Account(alice.config, alice.data_dir, alice.env, name="bob")
    alice.run("put", "default", "k", stdin=b"alice's value")
    bob.run("put", "default", "k", "--account", "bob", stdin=b"bob's value")
    bob_before = snapshot(bob.directory)
    started = time.time()

    wiped = alice.text("wipe", "--account", "alice", "--yes")
    assert wiped.startswith("account 'alice' wiped")
    assert not alice.directory.exists()
    assert snapshot(bob.directory) == bob_before
    assert bob.text("get", "default", "k", "--account", "bob") == "bob's value"
    assert bob.json("ls", "default", "--account", "bob")["keys"] == ["k"]
    assert os.stat(bob.keys_file).st_mtime < started  # bob's key record never rewritten
    alice.error("get", "default", "k", "--account", "alice", code=4)


def test_a_sqlcipher_cache_is_purged_once_its_key_is_unlocked(tmp_path: Path) -> None:
    """The issue's compartments: an encrypted database ``vault`` and a ``cache`` that forgets."""
    pytest.importorskip("sqlcipher3")
    config = make_config(
        tmp_path,
        vault={"use": "sqlcipher"},
        cache={"use": "sqlcipher", "retention": "1s"},
    )
    with Strongroom(config) as stack:
        stack.initialise()
        stack.store("vault").put("k", b"kept")
        stack.store("cache").put("k", b"forgotten")
    time.sleep(1.2)
    with Strongroom(config) as stack:
        stack.store("cache")  # locked: the database cannot be opened to purge yet
        assert stack._purged == set()
        stack.keys.unlock()
        assert list(stack.store("cache").keys()) == []  # asked again: purged first
        assert stack._purged == {"cache"}
        assert stack.store("vault").get("k") == b"kept"
