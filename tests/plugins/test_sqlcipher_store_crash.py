"""The ``sqlcipher`` store killed with SIGKILL mid-write and mid-re-key, in a child process.

A re-key is killed at each of its named steps (``_rekey.STEPS``, through
its ``on_step`` seam) and at random moments inside ``PRAGMA rekey``; a
batch and a blob are killed half-way through.  Afterwards the database
must open under the old or the new key version, the sidecar must say
which once opened, and no row may be lost or half-written.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlcipher_support import MARKER, bind, child, open_sqlcipher_store

from strongroom.keys import AccountKeys
from strongroom_plugins.sqlcipher._rekey import STEPS
from strongroom_plugins.sqlcipher.store import SqlcipherStore

RECORDS = {f"record/{index:04d}": MARKER + bytes([index % 251]) * 700 for index in range(600)}
BLOB = MARKER * (300_000 // len(MARKER))


def fill(keys: AccountKeys) -> None:
    with open_sqlcipher_store(bind(keys)) as store:
        store.put_many(RECORDS.items())
        store.put_blob("blob", [BLOB])


def digest(store: SqlcipherStore) -> str:
    h = hashlib.sha256()
    for key in store.keys(""):
        h.update(key.encode())
        h.update(b"".join(store.get_any(key)))
    return h.hexdigest()


EXPECTED = hashlib.sha256(
    b"".join(k.encode() + (BLOB if k == "blob" else RECORDS[k]) for k in sorted([*RECORDS, "blob"]))
).hexdigest()


def sidecar(keys: AccountKeys) -> dict[str, int]:
    return json.loads((keys.directory / "stores" / "vault" / "store.key-version").read_text())


def wait_for(process: subprocess.Popen[str], line: str, timeout: float = 30.0) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = process.stdout.readline().strip()
        if got == line:
            return
        if not got and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"child never said {line!r}: {process.communicate()[1][-3000:]}")


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)  # closes the pipes
    assert process.returncode == -signal.SIGKILL


def opened_version(store: SqlcipherStore) -> int:
    list(store.keys("x"))
    assert store._runner.opened is not None
    return store._runner.opened.version


REKEY_AT_STEP = """
import strongroom_plugins.sqlcipher._rekey as rekey
wanted = sys.argv[2]
def on_step(step):
    if step == wanted:
        say("at " + step)
        time.sleep(60)
rekey.on_step = on_step
list(store.reencrypt())
say("done")
"""


@pytest.mark.parametrize("step", STEPS)
def test_rekey_killed_at_each_step(account_keys: AccountKeys, step: str) -> None:
    fill(account_keys)
    purpose = bind(account_keys).purpose
    account_keys.rotate(purpose)
    process = child(account_keys, REKEY_AT_STEP, step)
    wait_for(process, f"at {step}")
    kill(process)

    committed = STEPS.index(step) >= STEPS.index("rekeyed")
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert opened_version(store) == (2 if committed else 1)
        assert sidecar(account_keys)["version"] == (2 if committed else 1)
        if step in ("rekeyed", "checkpointed"):  # the opener finished the dead re-key's work
            assert sidecar(account_keys) == {"format": 1, "version": 2}
            assert account_keys.floor(purpose) == 2
        assert digest(store) == EXPECTED
        # a re-key that committed raises the floor when reopened, or when run again
        list(store.reencrypt())
        assert opened_version(store) == 2
        assert sidecar(account_keys) == {"format": 1, "version": 2}
        assert account_keys.floor(purpose) == 2
        assert digest(store) == EXPECTED


REKEY_FOREVER = """
purpose = binding.purpose
while True:
    keys.rotate(purpose)
    say("rekeying")
    list(store.reencrypt())
"""


def test_rekey_killed_at_random_moments(account_keys: AccountKeys) -> None:
    fill(account_keys)
    rng = random.Random(20261129)
    seen: set[int] = set()
    for _round in range(8):
        process = child(account_keys, REKEY_FOREVER)
        wait_for(process, "rekeying")
        time.sleep(rng.uniform(0, 0.06))
        kill(process)
        with open_sqlcipher_store(bind(account_keys)) as store:
            version = opened_version(store)
            seen.add(version)
            assert sidecar(account_keys)["version"] == version
            assert digest(store) == EXPECTED
    assert len(seen) > 1, "the kills never landed on both sides of a commit"


PUT_MANY_HALF_WAY = """
def items():
    for index in range(2000):
        if index == 1000:
            say("half-way")
            time.sleep(60)
        yield f"batch/{index:04d}", b"new" * 100
store.put_many(items())
"""


def test_put_many_killed_half_way_stores_nothing(account_keys: AccountKeys) -> None:
    fill(account_keys)
    process = child(account_keys, PUT_MANY_HALF_WAY)
    wait_for(process, "half-way")
    kill(process)
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert list(store.keys("batch/")) == []
        assert digest(store) == EXPECTED


PUT_MANY_FOREVER = """
batch = 0
say("writing")
while True:
    store.put_many((f"b{batch:05d}/{index:03d}", os.urandom(300)) for index in range(400))
    batch += 1
"""


def test_batches_killed_at_random_are_all_or_nothing(account_keys: AccountKeys) -> None:
    fill(account_keys)
    rng = random.Random(7)
    for _round in range(4):
        process = child(account_keys, PUT_MANY_FOREVER)
        wait_for(process, "writing")
        time.sleep(rng.uniform(0.05, 0.3))
        kill(process)
    with open_sqlcipher_store(bind(account_keys)) as store:
        counts: dict[str, int] = {}
        for key in store.keys("b0"):
            counts[key.split("/")[0]] = counts.get(key.split("/")[0], 0) + 1
        assert counts, "no batch ever committed"
        assert set(counts.values()) == {400}, f"a batch was half-stored: {counts}"
        assert digest_of_records(store) == len(RECORDS)


def digest_of_records(store: SqlcipherStore) -> int:
    return sum(store.get(key) == value for key, value in RECORDS.items())


BLOB_HALF_WAY = """
def pieces():
    for index in range(100):
        if index == 50:
            say("half-way")
            time.sleep(60)
        yield b"new blob piece " * 1000
store.put_blob("blob", pieces())
"""


def test_put_blob_killed_half_way_keeps_the_old_blob(account_keys: AccountKeys) -> None:
    fill(account_keys)
    process = child(account_keys, BLOB_HALF_WAY)
    wait_for(process, "half-way")
    kill(process)
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert b"".join(store.get_blob("blob")) == BLOB
        assert digest(store) == EXPECTED


def test_nothing_in_the_clear_after_the_kills(account_keys: AccountKeys) -> None:
    fill(account_keys)
    account_keys.rotate(bind(account_keys).purpose)
    process = child(account_keys, REKEY_AT_STEP, "rekeyed")
    wait_for(process, "at rekeyed")
    kill(process)
    directory: Path = account_keys.directory / "stores" / "vault"
    files = sorted(path for path in directory.iterdir() if path.is_file())
    assert any(path.name.endswith("-wal") for path in files), "the kill left a WAL to scan"
    for path in files:
        data = path.read_bytes()
        assert MARKER not in data, path.name
        assert b"record/0001" not in data, path.name
