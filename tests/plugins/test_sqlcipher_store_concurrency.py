"""Several processes on one ``sqlcipher`` store: writers wait, readers ride out re-keys."""

from __future__ import annotations

import subprocess
import time

import pytest
from sqlcipher_support import bind, child, open_sqlcipher_store

from strongroom.keys import AccountKeys
from strongroom.store import StoreBinding
from strongroom_plugins.sqlcipher.store import (
    SqlcipherStore,
    SqlcipherStoreSettings,
    StoreBusyError,
)

WRITER = """
name = sys.argv[2]
for index in range(150):
    store.put(f"{name}/{index:03d}", f"{name} {index}".encode())
store.put_many((f"{name}/batch/{index:03d}", b"b" * 200) for index in range(300))
store.put_blob(f"{name}/blob", [name.encode() * 5000])
say("done")
"""


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return out


def test_processes_writing_at_once_lose_nothing(account_keys: AccountKeys) -> None:
    binding = bind(account_keys)
    with open_sqlcipher_store(binding) as store:
        store.put("created", b"first")
        writers = [child(account_keys, WRITER, name) for name in ("w1", "w2", "w3")]
        for index in range(150):
            store.put(f"parent/{index:03d}", b"p")
        for process in writers:
            assert finish(process) == "done\n"
        for name in ("w1", "w2", "w3"):
            assert len(list(store.keys(f"{name}/"))) == 150 + 300 + 1
            assert store.get(f"{name}/149") == f"{name} 149".encode()
            assert b"".join(store.get_blob(f"{name}/blob")) == name.encode() * 5000
        assert len(list(store.keys("parent/"))) == 150


def test_a_writer_held_past_the_busy_timeout_is_a_clear_store_error(
    account_keys: AccountKeys,
) -> None:
    binding = bind(account_keys)
    with open_sqlcipher_store(binding) as store:
        store.put("k", b"v")
        blocker = store.connect()
        blocker.execute("INSERT INTO strongroom_meta VALUES ('blocker', 1)")  # holds the lock
        impatient = SqlcipherStore(SqlcipherStoreSettings(busy_timeout=0.2), binding=binding)
        started = time.monotonic()
        for write in (
            lambda: impatient.put("k", b"other"),
            lambda: impatient.put_many([("a", b"1")]),
            lambda: impatient.put_blob("b", [b"x"]),
            lambda: impatient.delete("k"),
        ):
            with pytest.raises(StoreBusyError, match="store 'vault' is busy") as info:
                write()
            assert "locked" not in str(info.value)
        assert time.monotonic() - started >= 0.8  # each waited its timeout
        assert impatient.get("k") == b"v"  # readers are never blocked (WAL)
        blocker.rollback()
        blocker.close()
        impatient.put("k", b"other")
        assert store.get("k") == b"other"
        impatient.close()


READER = """
import hashlib
from strongroom.errors import StrongroomError
expected = {f"r/{index:03d}": bytes([index % 251]) * 500 for index in range(300)}
say("reading")
deadline = time.monotonic() + float(sys.argv[2])
reads = errors = 0
while time.monotonic() < deadline:
    try:
        got = {key: store.get(key) for key in store.keys("r/")}
        assert got == expected, "wrong data"
        assert b"".join(store.get_blob("blob")) == b"B" * 40000
        reads += 1
    except StrongroomError as exc:
        errors += 1
        say(f"error {type(exc).__name__}: {exc}")
say(f"reads {reads} errors {errors}")
"""


def test_readers_in_another_process_ride_out_rekeys(account_keys: AccountKeys) -> None:
    binding: StoreBinding = bind(account_keys)
    with open_sqlcipher_store(binding) as store:
        store.put_many((f"r/{index:03d}", bytes([index % 251]) * 500) for index in range(300))
        store.put_blob("blob", [b"B" * 40000])
        readers = [child(account_keys, READER, "3") for _ in range(2)]
        for process in readers:
            assert process.stdout is not None
            assert process.stdout.readline() == "reading\n"
        rekeys = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            account_keys.rotate(binding.purpose)
            list(store.reencrypt())
            rekeys += 1
        assert rekeys >= 3
        for process in readers:
            lines = finish(process).splitlines()
            assert lines[-1].startswith("reads "), lines[-5:]
            assert lines[-1].endswith(" errors 0"), lines[-5:]
            assert int(lines[-1].split()[1]) > 0
