"""The ``files`` store killed with SIGKILL at random points: old or new, never neither.

A helper process imports strongroom and unlocks the account once, then
forks a fresh worker for every round: the worker writes (or re-encrypts)
until the test kills it with SIGKILL at a random moment.  After each kill
the test opens the store and checks every record and blob.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.errors import RecordNotFoundError
from strongroom.formats import peek_key_version
from strongroom.keys import AccountKeys
from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

CHUNK = 4096
RECORDS = {
    f"record-{index}": (b"A" * (index * 300), b"B" * (index * 300 + 77)) for index in range(8)
}
BLOB = (bytes(range(256)) * 50, bytes(range(255, -1, -1)) * 70)  # 3 and 5 chunks
SWITCH = (b"switch as a record", b"switch as a blob" * 400)
EXPECTED_KEYS = sorted([*RECORDS, "blob", "switch"])

HELPER = r"""
import os, sys
from pathlib import Path

from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

RECORDS = {
    f"record-{index}": (b"A" * (index * 300), b"B" * (index * 300 + 77)) for index in range(8)
}
BLOB = (bytes(range(256)) * 50, bytes(range(255, -1, -1)) * 70)
SWITCH = (b"switch as a record", b"switch as a blob" * 400)

account_dir = Path(sys.argv[1])
keys = make_account_keys(
    account_dir, provider=MemoryKeyProvider(kek=bytes.fromhex(os.environ["STRONGROOM_TEST_KEK"]))
)
keys.unlock()


def say(line):
    os.write(1, (line + "\n").encode())


def pieces(data):
    return (data[start : start + 1000] for start in range(0, len(data), 1000))


def write_forever(store):
    say("started")
    turn = 0
    while True:
        turn += 1
        for key, values in RECORDS.items():
            store.put(key, values[turn % 2])
        store.put_blob("blob", pieces(BLOB[turn % 2]))
        if turn % 2:
            store.put("switch", SWITCH[0])
        else:
            store.put_blob("switch", [SWITCH[1]])


def reencrypt(store):
    for done, total in store.reencrypt():
        say(f"progress {done} {total}")
    say("finished")


say("ready")
binding = StoreBinding("alice", "notes", account_dir / "stores" / "notes", keys)
for command in sys.stdin:
    # Unwrap the keys (and load the suite) here once, so that each worker starts writing at once.
    keys.data_key(binding.purpose)
    keys.data_key(binding.names_purpose, 1)
    pid = os.fork()
    if pid == 0:
        store = FilesStore(FilesStoreSettings(chunk_size=4096), binding=binding)
        (write_forever if command.strip() == "write" else reencrypt)(store)
        os._exit(0)
    say(f"pid {pid}")
    _, status = os.waitpid(pid, 0)
    say(f"exit {status}")
"""


class Helper:
    """The forking helper process and its line protocol."""

    def __init__(self, account_dir: Path, kek: bytes) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HELPER, str(account_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "STRONGROOM_TEST_KEK": kek.hex()},
        )
        self._buffer = b""
        self._lines: list[str] = []
        self.worker: int | None = None
        self.expect("ready", timeout=30)

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """The first line not yet taken that starts with ``prefix``, waiting for it.

        The worker and the helper write to the same pipe, so their lines may
        come in either order; lines are taken by prefix, not by position.
        """
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            for index, line in enumerate(self._lines):
                if line.startswith(prefix):
                    return self._lines.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"helper did not say {prefix!r} in time: {self._lines}")
            ready, _, _ = select.select([stdout], [], [], remaining)
            if ready:
                data = os.read(stdout.fileno(), 65536)
                if not data:
                    raise AssertionError(f"helper exited before saying {prefix!r}")
                *complete, self._buffer = (self._buffer + data).split(b"\n")
                self._lines.extend(line.decode() for line in complete)

    def start(self, command: str) -> int:
        """Fork a worker running ``command``; return its process id."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(command.encode() + b"\n")
        stdin.flush()
        self.worker = int(self.expect("pid ").split()[1])
        return self.worker

    def kill_worker(self) -> str:
        """SIGKILL the worker (if still running) and return the helper's ``exit`` line."""
        assert self.worker is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.worker, signal.SIGKILL)
        status = self.expect("exit ")
        self.worker = None
        self._lines.clear()  # the worker is gone: whatever it said is stale
        return status

    def close(self) -> None:
        if self.worker is not None:  # a failed test left it running
            self.kill_worker()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


@pytest.fixture
def account_keys(tmp_path: Path, kek: bytes) -> Iterator[AccountKeys]:
    keys = make_account_keys(tmp_path / "alice", provider=MemoryKeyProvider(kek=kek))
    keys.create()
    (keys.directory / "stores" / "notes").mkdir(mode=0o700, parents=True)
    yield keys
    keys.close()


@pytest.fixture
def store(account_keys: AccountKeys) -> Iterator[FilesStore]:
    binding = StoreBinding(
        "alice", "notes", account_keys.directory / "stores" / "notes", account_keys
    )
    with FilesStore(FilesStoreSettings(chunk_size=CHUNK), binding=binding) as store:
        yield store


@pytest.fixture
def helper(account_keys: AccountKeys, kek: bytes) -> Iterator[Helper]:
    helper = Helper(account_keys.directory, kek)
    yield helper
    helper.close()


def temporaries(store: FilesStore) -> list[Path]:
    return [p for p in store.binding.directory.rglob("*.tmp") if p.is_file()]


def joined(store: FilesStore, key: str) -> bytes:
    return b"".join(store.get_blob(key))


def check_written_state(store: FilesStore) -> None:
    assert list(store.keys()) == EXPECTED_KEYS
    for key, values in RECORDS.items():
        assert store.get(key) in values, key
    assert joined(store, "blob") in BLOB
    present = []
    for read, value in ((store.get, SWITCH[0]), (lambda key: joined(store, key), SWITCH[1])):
        try:
            assert read("switch") == value
            present.append(value)
        except RecordNotFoundError:
            pass
    assert present, "the switching key vanished"


def test_killed_writers_leave_old_or_new_values(store: FilesStore, helper: Helper) -> None:
    for key, values in RECORDS.items():
        store.put(key, values[0])
    store.put_blob("blob", [BLOB[0]])
    store.put("switch", SWITCH[0])
    rng = secrets.SystemRandom()
    deadline = time.monotonic() + 12
    rounds = leftovers = 0
    while rounds < 25 and time.monotonic() < deadline:
        rounds += 1
        helper.start("write")
        helper.expect("started")
        time.sleep(rng.uniform(0, 0.2))
        helper.kill_worker()
        check_written_state(store)
        leftovers = max(leftovers, len(temporaries(store)))
    assert rounds >= 10
    store.put("record-1", b"after the crashes")  # writes still work with leftovers about
    assert store.get("record-1") == b"after the crashes"


def versions(store: FilesStore) -> list[int]:
    return [
        peek_key_version(path.read_bytes()[:16])
        for path in sorted(store.binding.directory.rglob("*"))
        if path.is_file()
        and path.parent.parent.name in {"records", "blobs"}
        and not path.name.startswith(".")
    ]


def test_killed_reencryption_resumes_to_completion(store: FilesStore, helper: Helper) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    values = {f"r{index:03}": os.urandom(index % 40 * 50) for index in range(60)}
    blobs = {f"b{index}": os.urandom(3 * CHUNK + index) for index in range(3)}
    for key, value in values.items():
        store.put(key, value)
    for key, blob in blobs.items():
        store.put_blob(key, [blob])
    target = keys.rotate(purpose)
    rng = secrets.SystemRandom()
    deadline = time.monotonic() + 8
    upgraded = 0
    rounds = completed = 0
    while rounds < 15 and time.monotonic() < deadline:
        rounds += 1
        helper.start("reencrypt")
        helper.expect("progress 0 ")
        time.sleep(rng.uniform(0, 0.15))
        status = helper.kill_worker()
        # listing authenticates every record and blob key file; blobs are read in full
        assert list(store.keys()) == sorted([*values, *blobs])
        for key, blob in blobs.items():
            assert joined(store, key) == blob
        current = sum(version >= target for version in versions(store))
        assert current >= upgraded, "re-encryption lost progress"
        upgraded = current
        if status != "exit 9":  # it finished before the kill: give it more to do
            completed += 1
            assert store._floor.read() == target
            target = keys.rotate(purpose)
            upgraded = 0
    assert rounds >= 5
    assert list(store.reencrypt())[-1] == (len(values) + len(blobs),) * 2
    assert set(versions(store)) == {target}
    assert store._floor.read() == target
    for version in range(1, target):
        keys.destroy(purpose, version)
    assert {key: store.get(key) for key in values} == values
    assert {key: joined(store, key) for key in blobs} == blobs
