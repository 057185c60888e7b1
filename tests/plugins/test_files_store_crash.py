"""The ``files`` store killed with SIGKILL before every disk step of every write.

A helper process imports strongroom and unlocks the account once, then
forks a fresh worker for every round.  The worker runs one operation with
its disk steps counted (creating a temporary file, fsync, rename, unlink,
mkdir, a hard link): it announces each step on the pipe before taking it,
and stops before step N to wait for the SIGKILL the test then sends.
Each operation is killed before each of its steps in turn, then let
finish.  Nothing is random and nothing is timed.

After every kill the test computes, from the steps the worker announced,
what must be on disk and checks it exactly: each key's record and blob
(old or new as the renames and removals say, never neither), the listing,
the key versions and the floor after a re-encryption (which must then
resume to completion), and the temporary files left behind (exactly those
made and not yet renamed, holding no plaintext).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from files_store_support import (
    blob_paths,
    header_version,
    path_of,
    temporaries,
)

from strongroom.errors import RecordNotFoundError
from strongroom.keys import AccountKeys
from strongroom_plugins.stores._index import INDEX_FILE
from strongroom_plugins.stores._journal import JOURNAL_FILE
from strongroom_plugins.stores.files import FilesStore

MARKER = b"PLAINTEXT-MARKER-5c1e"
#: The key record's file: a re-encryption pass raises the floor by replacing it.
KEY_RECORD = "keys.json"


def value(name: str, size: int) -> bytes:
    return (MARKER + name.encode()) * (size // (len(MARKER) + len(name)) + 1)


#: Every key, its form and value before each round (``None``: absent).
BASELINE: dict[str, tuple[str | None, bytes]] = {
    "record": ("record", value("old record", 900)),
    "to-record": ("blob", value("old blob to-record", 3 * 4096 + 5)),
    "blob": ("blob", value("old blob", 5 * 4096)),
    "to-blob": ("record", value("old to-blob", 300)),
    "gone-record": ("record", value("gone record", 100)),
    "gone-blob": ("blob", value("gone blob", 2 * 4096)),
    "fresh-record": (None, b""),
    "fresh-blob": (None, b""),
}
#: Each write: the key it changes and its new form and value (``None``: deleted).
WRITES: dict[str, tuple[str, str | None, bytes]] = {
    "put over a record": ("record", "record", value("new record", 1200)),
    "put over a blob": ("to-record", "record", value("new to-record", 500)),
    "put_blob over a blob": ("blob", "blob", value("new blob", 4 * 4096 + 1)),
    "put_blob over a record": ("to-blob", "blob", value("new blob to-blob", 3 * 4096)),
    "put a new key": ("fresh-record", "record", value("fresh record", 700)),
    "put_blob a new key": ("fresh-blob", "blob", value("fresh blob", 2 * 4096 + 9)),
    "delete a record": ("gone-record", None, b""),
    "delete a blob": ("gone-blob", None, b""),
}

#: One ``put_many``: over a record, over a blob, a new key.
BATCH = {
    "record": value("batched record", 800),
    "to-record": value("batched to-record", 600),
    "fresh-record": value("batched fresh", 400),
}

HELPER = r"""
import json, os, signal, sys
from pathlib import Path

from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

account_dir, writes = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
keys = make_account_keys(account_dir, provider=MemoryKeyProvider(kek=bytes(range(32))))
keys.unlock()
binding = StoreBinding("alice", "notes", account_dir / "stores" / "notes", keys)


def say(line):
    os.write(1, (line + "\n").encode())


def count_steps(stop_at):
    # Announce every disk step before it is taken; wait to be killed before step stop_at.
    taken = 0

    def step(kind, paths):
        nonlocal taken
        taken += 1
        say(" ".join(["step", str(taken), kind, *(os.fspath(p) for p in paths)]))
        if taken == stop_at:
            while True:
                signal.pause()

    def counted(name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            step(name, [a for a in args if isinstance(a, (str, os.PathLike))])
            return real(*args, **kwargs)

        setattr(os, name, call)

    for name in ("mkdir", "fsync", "replace", "unlink", "link"):
        counted(name)
    create = _disk._create_temp_in

    def creating(directory, name):
        step("create", [os.path.join(directory, name)])
        temp, fd = create(directory, name)
        say(f"made {temp}")
        return temp, fd

    _disk._create_temp_in = creating


def run(store, operation):
    if operation == "reencrypt":
        list(store.reencrypt())
    elif operation == "get":
        store.get("record")
    elif operation == "ls":
        list(store.keys())
    elif operation == "put_many":
        store.put_many((key, bytes.fromhex(new)) for key, new in writes["put_many"])
    else:
        key, form, new = writes[operation]
        if form is None:
            store.delete(key)
        elif form == "record":
            store.put(key, bytes.fromhex(new))
        else:
            data = bytes.fromhex(new)
            store.put_blob(key, (data[i : i + 1000] for i in range(0, len(data), 1000)))


say("ready")
for command in sys.stdin:
    operation, stop_at = command.rsplit(" ", 1)
    # Unwrap the keys here once, so that each worker starts at once.
    keys.data_key(binding.purpose)
    keys.data_key(binding.names_purpose, 1)
    pid = os.fork()
    if pid == 0:
        store = FilesStore(FilesStoreSettings(chunk_size=4096), binding=binding)
        count_steps(int(stop_at))
        run(store, operation)
        say("finished")
        os._exit(0)
    say(f"pid {pid}")
    _, status = os.waitpid(pid, 0)
    say(f"exit {status}")
"""


@dataclass
class Steps:
    """What a worker announced before it was killed, or finished."""

    taken: list[tuple[str, list[str]]] = field(default_factory=list)
    made: list[Path] = field(default_factory=list)
    finished: bool = False

    def replaced(self, target: Path) -> bool:
        return any(kind == "replace" and paths[1:] == [str(target)] for kind, paths in self.taken)

    def unlinked(self, path: Path) -> bool:
        return any(kind == "unlink" and paths == [str(path)] for kind, paths in self.taken)

    def gone(self) -> set[Path]:
        """Paths renamed away or removed."""
        return {
            Path(paths[0]) for kind, paths in self.taken if kind in {"replace", "unlink"} and paths
        }


class Helper:
    """The forking helper process and its line protocol."""

    def __init__(self, account_dir: Path, writes_file: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HELPER, str(account_dir), str(writes_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._buffer = b""
        self._lines: list[str] = []
        self.worker: int | None = None
        assert self._next(("ready",)) == "ready"

    def run(self, operation: str, stop_at: int) -> Steps:
        """Run ``operation`` in a new worker, killed before its step ``stop_at``."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(f"{operation} {stop_at}\n".encode())
        stdin.flush()
        steps = Steps()
        while True:
            line = self._next(("pid ", "step ", "made ", "finished"))
            if line.startswith("pid "):
                self.worker = int(line.split()[1])
            elif line.startswith("made "):
                steps.made.append(Path(line.removeprefix("made ")))
            elif line == "finished":
                steps.finished = True
                break
            else:
                _, number, kind, *paths = line.split(" ")
                if int(number) == stop_at:
                    break
                steps.taken.append((kind, paths))
                if kind == "link":  # a second, temporary name (``_disk.link_aside``)
                    steps.made.append(Path(paths[1]))
        if self.worker is None:
            self.worker = int(self._next(("pid ",)).split()[1])
        if not steps.finished:
            os.kill(self.worker, signal.SIGKILL)
        status = int(self._next(("exit ",)).split()[1])
        assert status == (0 if steps.finished else signal.SIGKILL), (operation, stop_at, status)
        self.worker = None
        return steps

    def _next(self, prefixes: tuple[str, ...], timeout: float = 30.0) -> str:
        """The first line not yet taken that starts with one of ``prefixes``.

        The worker and the helper share the pipe: a line is taken by prefix,
        and the worker's own lines stay in the order it wrote them.
        """
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            for index, line in enumerate(self._lines):
                if line.startswith(prefixes):
                    return self._lines.pop(index)
            ready, _, _ = select.select([stdout], [], [], timeout)
            data = os.read(stdout.fileno(), 65536) if ready else b""
            if not data:
                raise AssertionError(f"the helper went quiet waiting for {prefixes}: {self._lines}")
            *complete, self._buffer = (self._buffer + data).split(b"\n")
            self._lines.extend(line.decode() for line in complete)

    def close(self) -> None:
        if self.worker is not None:  # a failed test left it running
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker, signal.SIGKILL)
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def helper(account_keys: AccountKeys, store: FilesStore, tmp_path: Path) -> Iterator[Helper]:
    writes: dict[str, object] = {
        name: (key, form, new.hex()) for name, (key, form, new) in WRITES.items()
    }
    writes["put_many"] = [(key, new.hex()) for key, new in BATCH.items()]
    (tmp_path / "writes.json").write_text(json.dumps(writes))
    helper = Helper(account_keys.directory, tmp_path / "writes.json")
    yield helper
    helper.close()


def reset(store: FilesStore) -> None:
    for key, (form, data) in BASELINE.items():
        if form == "record":
            store.put(key, data)
        elif form == "blob":
            store.put_blob(key, [data])
        else:
            with contextlib.suppress(RecordNotFoundError):
                store.delete(key)


def read(store: FilesStore, key: str) -> tuple[bytes | None, bytes | None]:
    """``key``'s record and blob, each ``None`` if absent."""
    found: list[bytes | None] = []
    for reader in (store.get, lambda key: b"".join(store.get_blob(key))):
        try:
            found.append(reader(key))
        except RecordNotFoundError:
            found.append(None)
    return found[0], found[1]


def expected_forms(store: FilesStore, operation: str, steps: Steps) -> dict[str, tuple]:
    """Each key's (record, blob) as the steps taken say they must be."""
    expected: dict[str, tuple[bytes | None, bytes | None]] = {
        key: (data if form == "record" else None, data if form == "blob" else None)
        for key, (form, data) in BASELINE.items()
    }
    if operation not in WRITES:
        return expected
    key, form, new = WRITES[operation]
    record, (blob, _key_file) = path_of(store, key), blob_paths(store, key)
    old_record, old_blob = expected[key]
    if form is None:  # delete: the record, the blob, then the key file
        expected[key] = (
            None if steps.unlinked(record) else old_record,
            None if steps.unlinked(blob) else old_blob,
        )
    elif form == "record":  # rename the record, then remove the blob and its key file
        expected[key] = (
            new if steps.replaced(record) else old_record,
            None if steps.unlinked(blob) else old_blob,
        )
    else:  # rename the key file, then the blob, then remove the record
        expected[key] = (
            None if steps.unlinked(record) else old_record,
            new if steps.replaced(blob) else old_blob,
        )
    return expected


def check(store: FilesStore, operation: str, steps: Steps, leftovers: set[Path]) -> None:
    where = f"{operation}, killed after {len(steps.taken)} steps: {steps.taken[-3:]}"
    expected = expected_forms(store, operation, steps)
    deleted = WRITES[operation][0] if WRITES.get(operation, ("", "", b""))[1] is None else None
    for key, (form, _) in BASELINE.items():  # old or new, never neither
        if form is not None and key != deleted:
            assert expected[key] != (None, None), f"{key!r} vanished after {where}"
    for key, forms in expected.items():
        assert read(store, key) == forms, f"{key!r} after {where}"
    present = sorted(key for key, forms in expected.items() if forms != (None, None))
    assert list(store.keys()) == present, where
    for key in present:  # whichever form: the record wins when both are left
        record, blob = expected[key]
        assert b"".join(store.get_any(key)) == (record if record is not None else blob), where
    assert temporaries(store.binding.directory) == leftovers, where
    for temp in leftovers:
        assert MARKER not in temp.read_bytes(), f"plaintext in {temp.name} after {where}"


def run_to_every_step(
    helper: Helper,
    store: FilesStore,
    operation: str,
    prepare: Callable[[], object] = lambda: None,
) -> Iterator[tuple[int, Steps, set[Path]]]:
    """Run ``operation`` killed before step 1, 2, ... and finally to the end.

    Before each run the store is reset to ``BASELINE`` and ``prepare()`` is called.
    """
    root, leftovers = store.binding.directory, set[Path]()
    stop_at = 0
    while True:
        stop_at += 1
        reset(store)
        prepare()
        steps = helper.run(operation, stop_at)
        leftovers |= {path for path in steps.made if path.is_relative_to(root)}
        leftovers -= steps.gone()
        yield stop_at, steps, leftovers
        if steps.finished:
            assert stop_at > 3, f"{operation} took too few steps to be worth killing"
            return


@pytest.mark.parametrize("operation", WRITES)
def test_a_write_killed_before_any_step_leaves_old_or_new(
    helper: Helper, store: FilesStore, operation: str
) -> None:
    index = store.binding.directory / INDEX_FILE

    def prepare() -> None:  # the write meets a complete index, which it leaves alone
        list(store.keys())
        assert index.exists()

    for _, steps, leftovers in run_to_every_step(helper, store, operation, prepare):
        assert index not in steps.gone()
        check(store, operation, steps, leftovers)  # lists through the index the write left
    assert steps.finished
    deletes = WRITES[operation][1] is None
    assert bool(leftovers) != deletes, "a kill after a temporary file was made leaves it"
    store.put("record", b"after the crashes")  # leftovers do not get in the way
    assert store.get("record") == b"after the crashes"


def test_a_lazy_reseal_killed_before_any_step_leaves_a_readable_record(
    helper: Helper, store: FilesStore
) -> None:
    record = path_of(store, "record")
    keys, purpose = store.binding.keys, store.binding.purpose
    for _, steps, leftovers in run_to_every_step(
        helper, store, "get", lambda: keys.rotate(purpose)
    ):
        primary = store.binding.keys.primary_version(store.binding.purpose)
        assert header_version(record) == (primary if steps.replaced(record) else primary - 1)
        check(store, "get", steps, leftovers)
    assert steps.replaced(record)


def test_a_reencryption_killed_before_any_step_resumes_to_completion(
    helper: Helper, store: FilesStore
) -> None:
    keys, purpose, root = store.binding.keys, store.binding.purpose, store.binding.directory
    orphan = blob_paths(store, "orphan")[1]

    index = root / INDEX_FILE

    def prepare() -> None:
        store.put_blob("orphan", [b"x"])
        blob_paths(store, "orphan")[0].unlink()  # as a killed put_blob leaves a key file
        list(store.keys())  # an index under the version about to be rotated out
        keys.rotate(purpose)  # everything is stale

    def objects() -> list[Path]:
        return sorted(
            path
            for path in root.rglob("*")
            if path.is_file() and root not in (path.parent, path.parent.parent)
            if not path.name.startswith(".")
        )

    present = [key for key, (form, _) in BASELINE.items() if form is not None]
    completed, floor, killed_with_asides = 0, keys.floor(purpose), 0
    for _, steps, leftovers in run_to_every_step(helper, store, "reencrypt", prepare):
        # a record replaced by the pass keeps a temporary name until the pass ends
        asides = {Path(paths[1]) for kind, paths in steps.taken if kind == "link"}
        killed_with_asides += bool(asides - steps.gone())
        target = keys.primary_version(purpose)
        for path in objects():  # each file is upgraded by one rename, or not yet
            assert header_version(path) == (target if steps.replaced(path) else target - 1), path
        assert orphan.exists() != steps.unlinked(orphan)
        assert header_version(index) == (target if steps.replaced(index) else target - 1)
        raised = any(
            kind == "replace" and paths[-1].endswith(KEY_RECORD) for kind, paths in steps.taken
        )
        assert keys.floor(purpose) == (target if raised else floor)
        if raised:
            assert not orphan.exists(), "orphans go before the floor rises"
        check(store, "reencrypt", steps, leftovers)
        completed += steps.finished
        assert list(store.reencrypt())[-1] == (len(present),) * 2  # resumes
        floor = keys.floor(purpose)
        assert floor == target
        assert {header_version(path) for path in objects()} == {target}
        assert header_version(index) == target, "resealed before the floor rose"
        assert not orphan.exists()
        if steps.finished:
            assert asides, "the pass keeps the records it replaces under a temporary name"
            assert asides <= steps.gone(), "a finished pass frees what it renamed aside"
    assert completed == 1
    assert killed_with_asides > 1, "kills must land while replaced records are kept aside"


@pytest.mark.parametrize("before", ["absent", "stale"])
def test_a_listing_killed_before_any_step_leaves_the_old_index_or_a_complete_one(
    helper: Helper, store: FilesStore, before: str
) -> None:
    """A listing rebuilds a missing index, or corrects a stale one, in one rename."""
    index = store.binding.directory / INDEX_FILE
    present = sorted(key for key, (form, _) in BASELINE.items() if form is not None)
    complete = {store._name(key.encode()): key for key in present}
    # stale: it misses a key written since, and names one deleted since
    stale = {name: key for name, key in complete.items() if key != "record"}
    stale[store._name(b"deleted since")] = "deleted since"

    def prepare() -> None:
        index.unlink(missing_ok=True)
        if before == "stale":
            store._index.save(stale)

    for _, steps, leftovers in run_to_every_step(helper, store, "ls", prepare):
        if steps.replaced(index):
            assert store._index.load() == complete
        elif before == "stale":
            assert store._index.load() == stale
        else:
            assert not index.exists()
        check(store, "ls", steps, leftovers)  # whatever index is left, the listing is right
        assert store._index.load() == complete
    assert steps.replaced(index)


def test_a_batch_killed_before_any_step_is_stored_whole_or_not_at_all(
    helper: Helper, store: FilesStore
) -> None:
    """``put_many`` commits by one rename; whoever uses the store next finishes it."""
    root = store.binding.directory
    journal = root / JOURNAL_FILE
    committed_runs = 0
    for _, steps, leftovers in run_to_every_step(helper, store, "put_many"):
        committed = steps.replaced(journal)
        where = f"killed after {len(steps.taken)} steps: {steps.taken[-3:]}"
        left_committed = committed and not steps.unlinked(journal)
        assert journal.exists() == left_committed, where
        expected = {
            key: (BATCH[key] if committed else data if form == "record" else None)
            for key, (form, data) in BASELINE.items()
            if key in BATCH
        }
        for key, record in expected.items():  # a read finishes a committed batch first
            assert read(store, key)[0] == record, f"{key!r} after {where}"
            if committed:
                assert read(store, key)[1] is None, f"{key!r} is a record now, after {where}"
        assert not journal.exists()
        present = sorted(
            key
            for key, (form, _) in BASELINE.items()
            if form is not None or (committed and key in BATCH)
        )
        assert list(store.keys()) == present, where
        assert temporaries(root) == leftovers, where
        for temp in leftovers:
            assert MARKER not in temp.read_bytes(), f"plaintext in {temp.name} after {where}"
        committed_runs += committed
    assert steps.finished
    assert committed_runs > 3
    fsyncs = [kind for kind, _ in steps.taken if kind == "fsync"]
    assert len(fsyncs) == 3, f"one fsync for the journal and two for the directory: {fsyncs}"
