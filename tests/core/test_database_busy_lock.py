"""A lock that lands while a sqlcipher operation runs must still close the keyed connection."""

from __future__ import annotations

import threading
from pathlib import Path

from test_key_policy import Presence, initialised, stack_of


def test_a_lock_during_an_operation_closes_the_connection_when_it_ends(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"use": "sqlcipher"})
    with stack_of(config, Presence()) as stack:
        stack.keys.unlock()
        store = stack.store("vault")
        store.put("k", b"secret")
        runner = store._runner  # type: ignore[attr-defined]
        inside, release = threading.Event(), threading.Event()

        def slow(conn: object) -> None:  # an operation in progress on the keyed connection
            inside.set()
            release.wait(5)

        worker = threading.Thread(target=runner.run, args=("a slow read", slow))
        worker.start()
        assert inside.wait(5)
        stack.keys.lock()  # forget() finds the runner busy and skips it
        release.set()
        worker.join(5)
        assert not stack.keys.unlocked
        assert runner.opened is None, "SQLCipher still holds the key after the lock"
