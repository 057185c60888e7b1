"""The ``Strongroom`` stack: closing is exception-safe, and counting objects for retirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts import default_stack_config
from strongroom import hookimpl
from strongroom._stack import Strongroom


class Recorder:
    """A hook plugin that hears the stack being taken down."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def strongroom_key_locked(self, account: str, reason: str) -> None:
        self.events.append(f"locked {account} ({reason})")

    @hookimpl
    def strongroom_unconfigure(self, strongroom: Any) -> None:
        self.events.append("unconfigure")


def _stack(root: Path, recorder: Recorder) -> Strongroom:
    config = default_stack_config(root, "a passphrase for the stack tests")
    return Strongroom(config, plugins=[recorder])


def test_close_wipes_the_keys_and_tells_plugins_even_when_a_backend_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    stack = _stack(tmp_path, recorder)
    stack.initialise()
    (name,) = stack.config.instances("stores")
    store = stack.store(name)
    store.put("k", b"value")
    master = stack.keys._session.master_key()

    def broken_close() -> None:
        raise OSError("the medium went away")

    monkeypatch.setattr(store, "close", broken_close)
    with pytest.raises(OSError, match="went away"):
        stack.close()
    assert master.wiped
    assert not stack.keys.unlocked
    assert recorder.events == ["locked alice (close)", "unconfigure"]
    stack.close()  # idempotent: nothing runs twice
    assert recorder.events == ["locked alice (close)", "unconfigure"]


def test_the_stack_counts_a_store_versions_for_the_hierarchy(tmp_path: Path) -> None:
    stack = _stack(tmp_path, Recorder())
    with stack:
        stack.initialise()
        (name,) = stack.config.instances("stores")
        stack.store(name).put("a", b"1")
        stack.store(name).put("b", b"2")
        purpose = f"store:{name}"
        stack.keys.rotate(purpose)
        stack.store(name).put("c", b"3")
        assert stack._count_objects(purpose, 1) == 2
        assert stack._count_objects(purpose, 2) == 1
        assert stack._count_objects("files", 1) is None  # files live anywhere: uncountable
        assert stack._count_objects("store:gone", 1) is None  # no configured store uses it
