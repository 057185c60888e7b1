"""An idle_timeout past threading.TIMEOUT_MAX (``inf``, ``1e10``) must not kill the watcher."""

from __future__ import annotations

import threading
import time

from strongroom.keys._session import Session
from strongroom.secret import Secret


def test_an_infinite_session_timeout_keeps_the_watcher_alive() -> None:
    locked: list[str] = []
    crashed: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: crashed.append(args.exc_value)  # type: ignore[assignment]
    try:
        session = Session(
            "alice",
            float("inf"),  # the config accepts inf and 1e10 for the session
            threading.RLock(),
            lambda _hook, **kwargs: locked.append(str(kwargs["reason"])),
            purpose_timeouts={"store:cache": 0.3},
        )
        session.start(Secret(bytearray(32), label="m"), 1)
        session._touch()  # the master key used: the watcher starts, sleeping "forever"
        time.sleep(0.2)
        session._touch("store:cache")
        deadline = time.monotonic() + 3
        while "store:cache" in session._used and time.monotonic() < deadline:
            time.sleep(0.02)
        session.lock("test")
    finally:
        threading.excepthook = previous
    assert not crashed, f"the idle watcher died: {crashed!r}"
    assert "store:cache" not in session._used, "the cache keyset never idled out"
