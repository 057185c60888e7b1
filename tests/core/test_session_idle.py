"""The idle lock: one watcher per unlocked period, a deadline that uses move, a lock that wipes.

Time is driven, not waited for: an injected clock decides whether the
deadline has passed, and an Event set by the lock hook says when it fired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from strongroom.errors import KeyLockedError
from strongroom.formats import Context, open_sealed
from strongroom.keys import _session
from strongroom.keys._session import DataKey, Session
from strongroom.secret import Secret
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

#: Generous: the lock fires within one short timeout of the clock passing the deadline.
FIRES_WITHIN = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Hooks:
    def __init__(self) -> None:
        self.locked = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name == "strongroom_key_locked":
            self.locked.set()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Every thread the session module starts."""
    threads: list[threading.Thread] = []

    class Recorded(threading.Thread):
        def start(self) -> None:
            threads.append(self)
            super().start()

    monkeypatch.setattr(_session.threading, "Thread", Recorded)
    return threads


def unlocked(timeout: float | None, hooks: Hooks, clock: Callable[[], float]) -> Session:
    session = Session("alice", timeout, threading.RLock(), hooks, clock=clock)
    session.start(Secret(bytearray(32), label="master"), 1)
    return session


def data_key() -> DataKey:
    return DataKey("files", 1, Aes256Gcm(), Secret(bytearray(range(32)), label="files key"))


def test_many_uses_start_one_watcher_and_the_lock_still_wipes(
    started: list[threading.Thread],
) -> None:
    hooks = Hooks()
    session = unlocked(0.05, hooks, time.monotonic)  # real time: the timeout really elapses
    key = data_key()
    session.remember(key)
    context = Context("alice", "files", "x")
    blob = key.subkeys.seal(b"value", context)
    for _ in range(2000):
        session.master_key()
        assert session.cached("files", 1) is key
    assert len(started) == 1
    assert hooks.locked.wait(FIRES_WITHIN)
    assert not session.unlocked
    assert key.material.wiped
    assert session.cached("files", 1) is None
    with pytest.raises(KeyLockedError):
        open_sealed(blob, lambda _v: key.subkeys, context)  # its subkeys went with it
    assert hooks.calls == [("strongroom_key_locked", {"account": "alice", "reason": "idle"})]
    started[0].join(FIRES_WITHIN)
    assert not started[0].is_alive()


def test_a_use_moves_the_deadline(started: list[threading.Thread]) -> None:
    clock, hooks = Clock(), Hooks()
    session = unlocked(0.02, hooks, clock)
    clock.now += 0.015
    session.master_key()  # deadline now at +0.035 on the injected clock
    clock.now += 0.015  # past the first deadline, not the moved one
    assert not hooks.locked.wait(0.2)  # the watcher woke several times and kept waiting
    assert session.unlocked
    clock.now += 0.05
    assert hooks.locked.wait(FIRES_WITHIN)
    assert not session.unlocked
    assert len(started) == 1


def test_lock_stops_the_watcher_and_a_new_unlock_starts_one(
    started: list[threading.Thread],
) -> None:
    clock, hooks = Clock(), Hooks()
    session = unlocked(3600, hooks, clock)
    session.lock("requested")
    started[0].join(FIRES_WITHIN)
    assert not started[0].is_alive()  # woken at once, not after an hour
    session.start(Secret(bytearray(32), label="master"), 1)
    session.master_key()
    assert len(started) == 2
    session.lock("requested")
    assert [kwargs["reason"] for _, kwargs in hooks.calls] == ["requested", "requested"]


def test_no_timeout_starts_no_thread(started: list[threading.Thread]) -> None:
    session = unlocked(None, Hooks(), Clock())
    for _ in range(100):
        session.master_key()
    assert started == []
