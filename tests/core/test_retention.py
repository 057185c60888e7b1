"""Retention: the config's ``retention`` key, refused where no store can keep it, and purging.

The stack is real (passphrase provider, files stores ``vault`` and
``cache``); records are made old by setting their files' modification
times, which is what the files store counts a retention from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeDistribution
from strongroom import hookimpl
from strongroom._retention import RULE, describe, parse_retention
from strongroom._stack import Strongroom
from strongroom.audit import AuditEvent
from strongroom.config import Config, parse_config
from strongroom.errors import ConfigError, RecordNotFoundError, UsageError
from strongroom_plugins.stores._expiry import HINT_FILE

PASSPHRASE = "a passphrase for the retention tests"  # noqa: S105 - a test secret
DAY = 86400.0


class Heard:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    def purges(self) -> list[dict[str, str]]:
        return [dict(e.details) for e in self.events if e.action == "data.purged"]


def make_config(root: Path, environ: dict[str, str] | None = None, **stores: Any) -> Config:
    """Account ``alice`` under ``root / "data"``, with cheap Argon2id and ``stores``."""
    secret = root / "passphrase"
    if not secret.exists():
        secret.write_text(PASSPHRASE)
        secret.chmod(0o600)
    provider = {"use": "passphrase", "memory_kib": 19456, "iterations": 2}
    data = {
        "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
        "key_providers": {"main": {**provider, "passphrase": f"file:{secret}"}},
        "stores": stores,
    }
    return parse_config(data, source=str(root / "strongroom.toml"), environ=environ or {})


def compartments(root: Path, retention: str = "1d") -> Config:
    return make_config(root, vault={"use": "files"}, cache={"use": "files", "retention": retention})


def age(directory: Path, seconds: float) -> int:
    """Make a files store's objects ``seconds`` older, as time passing would; return how many.

    The store's ``expiry`` hint (a bound on its objects' times) moves back with them.
    """
    when = time.time() - seconds
    files = [p for sub in ("records", "blobs") for p in (directory / sub).rglob("*") if p.is_file()]
    for path in files:
        os.utime(path, (when, when))
    backdate_hint(directory, seconds)
    return len(files)


def backdate_hint(directory: Path, seconds: float) -> None:
    hint = directory / HINT_FILE
    if hint.exists():
        hint.write_text(str(int(hint.read_text()) - int(seconds * 1e9)))


# --- the setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 30 * DAY)]
)
def test_retention_takes_seconds_minutes_hours_and_days(text: str, seconds: float) -> None:
    assert parse_retention(text, source="f", table="stores.cache") == seconds
    assert describe(seconds) == text


@pytest.mark.parametrize(
    "value", ["0d", "0", "-1d", "30", "d", "30w", "1.5h", " 30d", "30D", "030d", "", 30, True]
)
def test_a_bad_retention_names_the_file_table_and_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, cache={"use": "files", "retention": value})
    assert str(caught.value) == (  # the rule, never the value
        f"{tmp_path / 'strongroom.toml'}: [stores.cache] key 'retention': {RULE}"
    )


def test_a_retention_override_names_its_variable(tmp_path: Path) -> None:
    variable = "STRONGROOM__STORES__CACHE__RETENTION"
    config = make_config(tmp_path, {variable: "12h"}, cache={"use": "files"})
    assert config.choice("stores.cache").retention == 12 * 3600
    with pytest.raises(ConfigError, match=rf"^\${variable}: \[stores.cache\] key 'retention'"):
        make_config(tmp_path, {variable: "soon"}, cache={"use": "files"})


def test_retention_is_not_a_store_setting(tmp_path: Path) -> None:
    """Generic like ``use``: the store's settings struct never sees it."""
    config = compartments(tmp_path)
    assert "retention" not in config.choice("stores.cache").settings
    assert config.choice("stores.vault").retention is None
    with Strongroom(config) as stack:
        assert stack.resolve("stores.cache").settings == stack.resolve("stores.vault").settings


NO_PURGE_STORE = """
from strongroom.store import Store


class KeepsEverything(Store):
    def put(self, key, value): raise NotImplementedError
    def get(self, key): raise NotImplementedError
    def delete(self, key): raise NotImplementedError
    def keys(self, prefix=""): raise NotImplementedError
    def put_blob(self, key, chunks): raise NotImplementedError
    def get_blob(self, key): raise NotImplementedError
    def reencrypt(self): raise NotImplementedError
"""


def test_retention_on_a_store_that_cannot_purge_is_refused_when_the_stack_is_built(
    tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "strongroom-keeps-everything",
        entry_points={"strongroom.stores": {"keeper": "keeps_everything:KeepsEverything"}},
        modules={"keeps_everything": NO_PURGE_STORE},
    )
    Strongroom(make_config(tmp_path, old={"use": "keeper"})).close()  # fine without retention
    config = make_config(tmp_path, old={"use": "keeper", "retention": "30d"})
    with pytest.raises(ConfigError) as caught:
        Strongroom(config)
    assert str(caught.value) == (
        f"{tmp_path / 'strongroom.toml'}: [stores.old] key 'retention': store backend "
        "'keeper' cannot purge records by age; remove the key or use a store that can "
        "(files, sqlcipher)"
    )


# --- purging ------------------------------------------------------------------------------


def test_the_stack_purges_a_store_past_its_retention_when_it_first_opens_it(
    tmp_path: Path,
) -> None:
    config = compartments(tmp_path)
    with Strongroom(config) as stack:
        stack.initialise()
        for name in ("vault", "cache"):
            stack.store(name).put("old", b"secret 1")
            stack.store(name).put_blob("old-blob", [b"secret 2"])
            assert age(stack.store(name).binding.directory, 2 * DAY) == 3  # and a key file
            stack.store(name).put("fresh", b"secret 3")
        assert list(stack.store("cache").keys()) == ["fresh", "old", "old-blob"]  # once a stack

    heard = Heard()
    with Strongroom(config, plugins=[heard]) as stack:
        stack.keys.unlock()
        cache, vault = stack.store("cache"), stack.store("vault")
        assert list(cache.keys()) == ["fresh"]
        with pytest.raises(RecordNotFoundError):
            cache.get("old")
        assert list(vault.keys()) == ["fresh", "old", "old-blob"]  # no retention: all kept
        assert vault.get("old") == b"secret 1"
        assert stack.purge_expired("cache") == 0  # nothing more is due
        with pytest.raises(UsageError, match="store 'vault' has no retention"):
            stack.purge_expired("vault")
    assert heard.purges() == [{"store": "cache", "count": "2", "reason": "retention"}]
    (event,) = [e for e in heard.events if e.action == "data.purged"]
    assert event.account == "alice"
    assert "old" not in repr(event)  # never a key
    assert "secret" not in repr(event)


def test_a_store_with_nothing_due_is_left_untouched(tmp_path: Path) -> None:
    config = compartments(tmp_path)
    with Strongroom(config) as stack:
        stack.initialise()
        stack.store("cache").put("k", b"v")
        list(stack.store("cache").keys())  # the name index is written
        directory = stack.store("cache").binding.directory
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()
    }
    heard = Heard()
    with Strongroom(config, plugins=[heard]) as stack:
        stack.store("cache")
        assert stack.purge_expired("cache") == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()}
    assert after == before
    assert heard.purges() == []


def test_a_locked_stack_purges_and_drops_the_name_index_it_cannot_rewrite(
    tmp_path: Path,
) -> None:
    """Purging needs no key; the sealed index that named the purged keys goes with them."""
    config = compartments(tmp_path)
    with Strongroom(config) as stack:
        stack.initialise()
        cache = stack.store("cache")
        cache.put("old", b"1")
        age(cache.binding.directory, 2 * DAY)
        cache.put("fresh", b"2")
        list(cache.keys())
        index = cache.binding.directory / "index"
        assert index.exists()
    with Strongroom(config) as stack:  # never unlocked
        assert not stack.keys.unlocked
        stack.store("cache")
        assert not index.exists()
        stack.keys.unlock()
        assert list(stack.store("cache").keys()) == ["fresh"]
        assert index.exists()  # rebuilt by the listing
