"""A store's policy covers its names keyset: no presence, no delete; its idle timeout wipes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_key_policy import Presence, initialised, stack_of, wait_for

from strongroom.errors import UnlockFailedError


def test_a_presence_store_refuses_a_delete_without_presence(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"policy": "presence"})
    with stack_of(config, Presence(True)) as stack:
        stack.keys.unlock()
        stack.store("vault").put("k", b"secret")
    declined = Presence(False)
    with stack_of(config, declined) as stack:
        stack.keys.unlock()
        with pytest.raises(UnlockFailedError):
            stack.store("vault").delete("k")  # the names key needs presence as the data key does
    with stack_of(config, Presence(True)) as stack:
        stack.keys.unlock()
        assert stack.store("vault").get("k") == b"secret"


def test_a_stores_idle_timeout_wipes_its_name_key(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"idle_timeout": 0.3})
    with stack_of(config, Presence(True)) as stack:
        stack.keys.unlock()
        store = stack.store("vault")
        store.put("k", b"secret")
        names = store._names  # type: ignore[attr-defined]
        assert names._name_key is not None
        session = stack.keys._session
        wait_for(lambda: not [slot for slot in session._data_keys if slot[0] == "store:vault"])
        wait_for(lambda: names._name_key is None, seconds=2)  # let go: its __del__ wipes it
        assert not [slot for slot in session._data_keys if slot[0].startswith("store:vault")]
        assert store.get("k") == b"secret"  # both come back
