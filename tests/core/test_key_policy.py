"""Key policy: presence before a provider or a store's key, store idle timeouts, background work.

The stack is the default one with a cheap passphrase handed over in
process; a hook plugin answers the presence requests and records every
event, so each test sees exactly what was asked and what the hooks heard.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from strongroom import Strongroom, hookimpl, parse_config
from strongroom.audit import AuditEvent
from strongroom.config import BUILTIN_SOURCE, Config
from strongroom.errors import ConfigError, KeyLockedError, UnlockFailedError, UsageError
from strongroom_plugins.stores.files import FilesStore

DURATION = "expected a positive duration: seconds, or a number with s, m, h or d"
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test secret


class Presence:
    """Answers presence requests with ``answer`` and records what the hooks heard."""

    def __init__(self, answer: bool | None = True) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.events: list[AuditEvent] = []
        self.locked: list[str] = []

    @hookimpl
    def strongroom_request_user_presence(self, account: str, reason: str) -> bool | None:
        self.asked.append(reason)
        return self.answer

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    @hookimpl
    def strongroom_key_locked(self, account: str, reason: str) -> None:
        self.locked.append(reason)


def config_with(root: Path, **tables: dict[str, Any]) -> Config:
    """The default stack with stores ``vault`` and ``cache`` and each table's extra keys."""
    data: dict[str, Any] = {
        "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
        "key_providers": {"main": {"use": "passphrase", "memory_kib": 19456, "iterations": 2}},
        "stores": {"vault": {"use": "files"}, "cache": {"use": "files"}},
    }
    for path, extra in tables.items():
        slot, _, name = path.partition("__")
        target = data[slot] if not name else data[slot][name]
        target.update(extra)
    return parse_config(data, source=BUILTIN_SOURCE, environ={})


def stack_of(config: Config, presence: Presence) -> Strongroom:
    return Strongroom(config, secrets={"main": PASSPHRASE}, plugins=[presence])


def initialised(root: Path, **tables: dict[str, Any]) -> Config:
    config = config_with(root, **tables)
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
    return config


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


# config


@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        ("stores__vault", "policy", "always", "expected 'unlocked' or 'presence'"),
        ("key_providers__main", "policy", 1, "expected 'unlocked' or 'presence'"),
        ("stores__vault", "idle_timeout", 0, DURATION),
        ("stores__vault", "idle_timeout", -5, DURATION),
        ("stores__vault", "idle_timeout", "soon", DURATION),
        ("stores__vault", "idle_timeout", True, DURATION),
    ],
)
def test_a_bad_policy_or_idle_timeout_names_where(
    tmp_path: Path, table: str, key: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, **{table: {key: value}})
    slot, _, name = table.partition("__")
    assert str(caught.value) == f"{BUILTIN_SOURCE}: [{slot}.{name}] key {key!r}: {expected}"


def test_durations_take_units(tmp_path: Path) -> None:
    for given, seconds in (
        (30, 30.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
    ):
        config = config_with(tmp_path, stores__cache={"idle_timeout": given})
        assert config.choice("stores.cache").idle_timeout == seconds
        assert "idle_timeout" not in config.choice("stores.cache").settings


# presence


def test_a_presence_provider_asks_before_it_unwraps(tmp_path: Path) -> None:
    config = initialised(tmp_path, key_providers__main={"policy": "presence"})
    present = Presence(True)
    with stack_of(config, present) as stack:
        stack.keys.unlock()
        assert present.asked == ["unlocking through provider 'main'"]
        checked = [event for event in present.events if event.action == "presence.checked"]
        assert [(event.outcome, event.details["answer"]) for event in checked] == [
            ("ok", "present")
        ]
    declined = Presence(False)
    with stack_of(config, declined) as stack, pytest.raises(UnlockFailedError) as caught:
        stack.keys.unlock()
    assert str(caught.value) == "user presence was declined (unlocking through provider 'main')"
    with stack_of(config, Presence(None)) as stack, pytest.raises(KeyLockedError) as locked:
        stack.keys.unlock()
    assert "needs user presence, and nothing could ask for it" in str(locked.value)


def test_a_presence_store_asks_once_per_unlocked_period(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"policy": "presence"})
    present = Presence(True)
    with stack_of(config, present) as stack:
        stack.keys.unlock()
        stack.store("cache").put("k", b"cached")  # no policy: never asks
        assert present.asked == []
        stack.store("vault").put("k", b"secret")
        assert stack.store("vault").get("k") == b"secret"
        assert present.asked == ["using the store:vault keyset"]
        stack.keys.lock()
        stack.keys.unlock()
        assert stack.store("vault").get("k") == b"secret"
        assert len(present.asked) == 2
        present.answer = False
        stack.keys.lock()
        stack.keys.unlock()
        with pytest.raises(UnlockFailedError, match="user presence was declined"):
            stack.store("vault").get("k")
        assert stack.store("cache").get("k") == b"cached"


# idle timeouts


def test_a_stores_keys_idle_out_on_their_own_and_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgotten: list[str] = []
    monkeypatch.setattr(
        FilesStore, "forget_keys", lambda self: forgotten.append(self.binding.name), raising=False
    )
    config = initialised(tmp_path, stores__vault={"policy": "presence", "idle_timeout": 0.3})
    present = Presence(True)
    with stack_of(config, present) as stack:
        stack.keys.unlock()
        stack.store("vault").put("k", b"secret")
        stack.store("cache").put("k", b"cached")
        session = stack.keys._session
        # the data and the names keysets idle out one after the other, each telling the store
        wait_for(lambda: "vault" in forgotten and not session._used)
        assert not [slot for slot in session._data_keys if slot[0].startswith("store:vault")]
        assert [slot for slot in session._data_keys if slot[0] == "store:cache"]
        assert stack.keys.unlocked  # the session itself stays unlocked
        assert stack.store("vault").get("k") == b"secret"  # its key comes back...
        assert len(present.asked) == 2  # ...after presence again


def test_the_session_idle_lock_fires_the_hooks_and_drops_the_stores_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgotten: list[str] = []
    monkeypatch.setattr(
        FilesStore, "forget_keys", lambda self: forgotten.append(self.binding.name), raising=False
    )
    config = initialised(tmp_path, strongroom={"idle_timeout": 0.3})
    present = Presence()
    with stack_of(config, present) as stack:
        stack.keys.unlock()
        stack.store("cache").put("k", b"cached")
        wait_for(lambda: present.locked == ["idle"])
        assert forgotten == ["cache"]  # every store built is told; vault never was
        assert not stack.keys.unlocked
        locked = [event for event in present.events if event.action == "key.locked"]
        assert [event.details["reason"] for event in locked] == ["idle"]
        with pytest.raises(KeyLockedError):
            stack.store("cache").get("k")


# background work


def test_background_work_holds_the_session_for_its_stores_only(tmp_path: Path) -> None:
    config = initialised(
        tmp_path,
        strongroom={"idle_timeout": 0.3},
        stores__vault={"policy": "presence"},
    )
    present = Presence(True)
    with stack_of(config, present) as stack:
        stack.keys.unlock()
        stack.store("vault").put("k", b"secret")  # presence given in the foreground
        stack.store("cache").put("k", b"cached")
        with pytest.raises(UsageError, match="store:vault needs user presence"):
            stack.background("vault").__enter__()
        with pytest.raises(UsageError, match="no store 'nope'"):
            stack.background("nope")
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with stack.background("cache"):
                    time.sleep(0.8)  # past the session's idle timeout
                    assert stack.store("cache").get("k") == b"cached"
                    with pytest.raises(KeyLockedError, match="background work cannot give"):
                        stack.store("vault").get("k")  # cached, and still refused
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        assert errors == []
        assert present.locked == []
        asked = len(present.asked)
        wait_for(lambda: present.locked == ["idle"])  # after the block, the clock runs again
        assert len(present.asked) == asked  # background work never asked anyone


def test_a_sqlcipher_store_closes_its_keyed_connection_when_the_keys_go(tmp_path: Path) -> None:
    config = initialised(
        tmp_path, stores__vault={"use": "sqlcipher"}, stores__cache={"use": "sqlcipher"}
    )
    with stack_of(config, Presence()) as stack:
        stack.keys.unlock()
        store = stack.store("vault")
        store.put("k", b"secret")
        runner = store._runner  # type: ignore[attr-defined]
        assert runner.opened is not None  # SQLCipher holds the key while it is open
        stack.keys.lock()
        assert runner.opened is None  # closed at the lock, not at the next use
        stack.keys.unlock()
        assert store.get("k") == b"secret"


def test_a_presence_database_is_refused_to_background_work_right_after_a_foreground_read(
    tmp_path: Path,
) -> None:
    # the sqlcipher store trusts a checked key version for a while; never a presence store's
    config = initialised(tmp_path, stores__vault={"use": "sqlcipher", "policy": "presence"})
    with stack_of(config, Presence(True)) as stack:
        stack.keys.unlock()
        vault = stack.store("vault")
        vault.put("k", b"secret")
        assert vault.get("k") == b"secret"  # presence given, the version just checked
        with (
            stack.background("cache"),
            pytest.raises(KeyLockedError, match="background work cannot give"),
        ):
            vault.get("k")


def test_background_work_stays_background_in_a_thread_given_its_context(tmp_path: Path) -> None:
    """Work a background block hands to another thread with its context asks no presence."""
    config = initialised(tmp_path, stores__vault={"use": "sqlcipher", "policy": "presence"})
    with stack_of(config, Presence(True)) as stack:
        stack.keys.unlock()
        vault = stack.store("vault")
        vault.put("k", b"secret")
        with stack.background("cache"), ThreadPoolExecutor(1) as pool:
            carried = pool.submit(contextvars.copy_context().run, vault.get, "k")
            with pytest.raises(KeyLockedError, match="background work cannot give"):
                carried.result()
            assert pool.submit(vault.get, "k").result() == b"secret"  # a thread of its own
        assert vault.get("k") == b"secret"
