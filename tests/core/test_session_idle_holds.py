"""A store's idle timeout without a session one: its drop is told, and survives a hold ending."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from strongroom.keys._session import Session
from strongroom.secret import Secret


def _session(dropped: list[str]) -> Session:
    guard = threading.RLock()
    session = Session(
        "alice",
        None,  # the session itself never idles out (idle_timeout = 0)
        guard,
        lambda *_a, **_k: None,
        purpose_timeouts={"store:cache": 0.2},
        dropped=dropped.append,
    )
    session.start(Secret(bytearray(32), label="m"), 1)
    return session


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 3
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_the_last_purpose_idling_out_tells_its_stores() -> None:
    dropped: list[str] = []
    session = _session(dropped)
    session._touch("store:cache")  # as remember() does
    _wait(lambda: bool(dropped))
    assert dropped == ["store:cache"], "the store was never told its keys went"
    session.lock("test")


def test_a_hold_ending_keeps_other_purposes_idle_timeouts_running() -> None:
    dropped: list[str] = []
    session = _session(dropped)
    session._touch("store:cache")
    with session.hold([]):  # background work naming no store
        pass
    _wait(lambda: "store:cache" not in session._used)
    assert "store:cache" not in session._used, "the cache keyset never idled out after the hold"
    session.lock("test")
