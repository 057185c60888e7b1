"""A presence prompt waiting on the user must not hold the key guard: the idle lock still fires."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_key_policy import Presence, initialised, stack_of, wait_for

from strongroom.errors import KeyLockedError


class SlowPresence(Presence):
    """A user who walked away: the prompt is answered only when ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(True)
        self.release = threading.Event()


def test_the_session_idles_out_while_a_presence_prompt_waits(tmp_path: Path) -> None:
    config = initialised(
        tmp_path, strongroom={"idle_timeout": 0.3}, stores__vault={"policy": "presence"}
    )
    present = Presence(True)
    slow = SlowPresence()
    with stack_of(config, present) as stack:
        stack.plugin_manager.unregister(present)
        from strongroom import hookimpl

        class Asker:
            @hookimpl
            def strongroom_request_user_presence(self, account: str, reason: str) -> bool:
                slow.asked.append(reason)
                slow.release.wait(10)
                return True

            @hookimpl
            def strongroom_key_locked(self, account: str, reason: str) -> None:
                slow.locked.append(reason)

        stack.plugin_manager.register(Asker())
        stack.keys.unlock()
        failed: list[BaseException] = []

        def use_vault() -> None:
            try:
                stack.keys.data_key("store:vault")
            except BaseException as exc:
                failed.append(exc)

        worker = threading.Thread(target=use_vault)
        worker.start()
        wait_for(lambda: bool(slow.asked))
        started = time.monotonic()
        while not slow.locked and time.monotonic() - started < 2:
            time.sleep(0.02)
        idled = list(slow.locked)
        slow.release.set()
        worker.join(10)
        assert idled == ["idle"], "the session stayed unlocked while the prompt waited"
        assert failed
        assert isinstance(failed[0], KeyLockedError)
        with pytest.raises(KeyLockedError):
            stack.keys.data_key("store:vault")
