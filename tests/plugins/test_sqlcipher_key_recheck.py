"""The sqlcipher store checks its key version every ``RECHECK_S``, and at once after a change here.

Reads are a few microseconds; asking the key hierarchy on each would double
them.  A change this process makes (a lock, a retirement) is seen by the
next operation; one made by another process within ``RECHECK_S``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlcipher_support import bind, new_keys, open_sqlcipher_store

from strongroom.errors import KeyLockedError, KeyUnavailableError
from strongroom_plugins.sqlcipher._runner import RECHECK_S


def test_a_version_retired_by_another_process_is_refused_within_the_recheck_interval(
    tmp_path: Path,
) -> None:
    keys = new_keys(tmp_path)
    keys.create()
    store = open_sqlcipher_store(bind(keys))
    store.put("k", b"v")
    assert store.get("k") == b"v"  # the version checked: trusted for RECHECK_S
    other = new_keys(tmp_path)  # another process: its own view of the same key record
    other.unlock()
    other.rotate(store.binding.purpose)
    other.retire(store.binding.purpose, 1, force=True)
    time.sleep(RECHECK_S * 2)
    with pytest.raises(KeyUnavailableError):
        store.get("k")


def test_a_version_retired_here_is_refused_at_once(tmp_path: Path) -> None:
    keys = new_keys(tmp_path)
    keys.create()
    store = open_sqlcipher_store(bind(keys))
    store.put("k", b"v")
    keys.rotate(store.binding.purpose)
    keys.retire(store.binding.purpose, 1, force=True)
    with pytest.raises(KeyUnavailableError):
        store.get("k")


def test_a_lock_here_is_refused_at_once(tmp_path: Path) -> None:
    keys = new_keys(tmp_path)
    keys.create()
    store = open_sqlcipher_store(bind(keys))
    store.put("k", b"v")
    assert store.get("k") == b"v"
    keys.lock()
    with pytest.raises(KeyLockedError):
        store.get("k")
