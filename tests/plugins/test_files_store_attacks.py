"""Attacks on the files store's batches, journal and name index, and what stops them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from files_store_support import bind, header_version, open_files_store, path_of

from strongroom.errors import IntegrityError, UsageError
from strongroom.keys import AccountKeys
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores import _disk, _install
from strongroom_plugins.stores._index import INDEX_FILE, INDEX_RECORD
from strongroom_plugins.stores._journal import JOURNAL_FILE
from strongroom_plugins.stores._layout import LOCK_FILE
from strongroom_plugins.stores.files import FilesStore

HANG_S = 20.0


class Killed(BaseException):
    """Stands in for SIGKILL between the journal's commit and its installation."""


@pytest.fixture
def counted() -> list[FilesStore]:
    return []


@pytest.fixture
def account_keys(tmp_path: Path, counted: list[FilesStore]) -> Iterator[AccountKeys]:
    """The shared fixture's account, whose key hierarchy counts objects in ``counted`` stores."""

    def count(purpose: str, version: int) -> int | None:
        return sum(
            s.versions_in_use().get(version, 0) for s in counted if s.binding.purpose == purpose
        )

    keys = make_account_keys(tmp_path / "alice", count_objects=count)
    keys.create()
    yield keys
    keys.close()


@pytest.fixture
def store(account_keys: AccountKeys, counted: list[FilesStore]) -> Iterator[FilesStore]:
    """The shared fixture's store, counted when a version is retired or destroyed."""
    with open_files_store(bind(account_keys)) as store:
        counted.append(store)
        yield store


def commit_then_die(store: FilesStore, monkeypatch: pytest.MonkeyPatch, items) -> Path:
    """put_many that commits its journal and is killed before installing any entry."""

    def killed(_root: Path, _journal: Path) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(_install, "apply", killed)
        with pytest.raises(Killed):
            store.put_many(items)
    journal = store.binding.directory / JOURNAL_FILE
    assert journal.exists()  # committed: the next user of the store must finish it
    return journal


def journal_of(store: FilesStore) -> Path:
    return store.binding.directory / JOURNAL_FILE


def test_a_committed_batch_is_counted_before_its_version_is_destroyed(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit_then_die(store, monkeypatch, [("a", b"batched 1"), ("b", b"batched 2")])
    assert store.versions_in_use() == {1: 2}  # the journal's entries are counted
    assert journal_of(store).exists()  # counted without the store's lock: left to the next user
    account_keys.rotate(store.binding.purpose)
    with pytest.raises(UsageError, match="still under key version 1"):
        account_keys.destroy(store.binding.purpose, 1)
    assert store.get("a") == b"batched 1"


def test_a_committed_batch_is_counted_when_the_key_hierarchy_asks(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit_then_die(store, monkeypatch, [("a", b"batched")])
    account_keys.rotate(store.binding.purpose)
    with pytest.raises(UsageError, match="still under key version 1"):
        account_keys.retire(store.binding.purpose, 1)
    assert store.get("a") == b"batched"


def test_counting_a_committed_batch_does_not_wait_for_the_store_lock(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key hierarchy counts under its own guard, which a lock holder may be waiting for."""
    commit_then_die(store, monkeypatch, [("a", b"batched")])
    counted: list[dict[int, int]] = []
    with _disk.flocked(store.binding.directory / LOCK_FILE):
        counter = threading.Thread(
            target=lambda: counted.append(store.versions_in_use()), daemon=True
        )
        counter.start()
        counter.join(HANG_S)
    assert counted == [{1: 1}]


def test_an_old_journal_put_back_is_a_rollback_under_the_same_key_version(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A documented limit (threat model, Rollback): as putting back the old record files would.

    The journal's records are sealed objects bound to their names, so it can
    only bring back values this store once held under a version still open;
    once a re-encryption pass raises the floor past it, it is refused.
    """
    journal = commit_then_die(store, monkeypatch, [("a", b"old"), ("b", b"old")])
    saved = journal.read_bytes()
    assert store.get("a") == b"old"  # replayed and removed by this reader
    store.put("a", b"newer")
    store.put_blob("b", [b"newer blob"])
    journal.write_bytes(saved)  # the old journal put back (a backup, a copy taken earlier)
    assert store.get("a") == b"old"  # the limit: rolled back, as its record file put back
    assert store.get("b") == b"old"  # and the record replaces the blob, as put_many does
    assert not journal.exists()


def test_an_old_journal_put_back_after_a_pass_is_refused(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = commit_then_die(store, monkeypatch, [("a", b"old")])
    saved = journal.read_bytes()
    store.put("a", b"newer")
    account_keys.rotate(store.binding.purpose)
    for _ in store.reencrypt():  # the floor rises to 2
        pass
    journal.write_bytes(saved)
    with pytest.raises(IntegrityError, match="rolled back"):
        store.get("a")


def test_ls_refuses_a_deleted_key_put_back_below_the_floor(
    store: FilesStore, account_keys: AccountKeys
) -> None:
    store.put("gone", b"deleted secret")
    store.put("kept", b"v")
    assert sorted(store.keys()) == ["gone", "kept"]  # the index learns both names
    copy = path_of(store, "gone").read_bytes()
    store.delete("gone")
    account_keys.rotate(store.binding.purpose)
    for _ in store.reencrypt():  # the floor rises to 2
        pass
    path_of(store, "gone").write_bytes(copy)  # the deleted record put back, below the floor
    assert list(store.unreadable())  # the store itself says it can never be opened
    # its header is below the floor: it is opened as if the index did not know it, and
    # refused as it is without the index, instead of being listed from the index
    with pytest.raises(IntegrityError, match="rolled back"):
        list(store.keys())
    assert store.purge_unreadable() == 1
    assert sorted(store.keys()) == ["kept"]


def test_ls_refuses_a_deleted_key_from_an_old_index_and_a_planted_file(
    store: FilesStore,
) -> None:
    store.put("gone", b"x")
    store.put("kept", b"v")
    assert sorted(store.keys()) == ["gone", "kept"]
    old_index = (store.binding.directory / INDEX_FILE).read_bytes()
    store.delete("gone")
    assert sorted(store.keys()) == ["kept"]
    (store.binding.directory / INDEX_FILE).write_bytes(old_index)  # an older index put back
    path_of(store, "gone").parent.mkdir(mode=0o700, exist_ok=True)
    path_of(store, "gone").write_bytes(b"not a sealed object")  # any bytes at the old name
    with pytest.raises(IntegrityError):  # its header is peeked: refused, as if not indexed
        list(store.keys())
    path_of(store, "gone").unlink()
    assert sorted(store.keys()) == ["kept"]


def test_ls_verifies_an_indexed_name_whose_header_names_a_version_never_had(
    store: FilesStore,
) -> None:
    store.put("k", b"v")
    assert list(store.keys()) == ["k"]
    record = path_of(store, "k")
    data = bytearray(record.read_bytes())
    planted = store.binding.directory / "planted"
    planted.write_bytes(bytes(data))
    # the version field follows the magic and suite; any byte flip there that still
    # parses names another version: the listing must not trust the index for it
    for offset in range(4, 16):
        data = bytearray(planted.read_bytes())
        data[offset] ^= 0x40
        record.write_bytes(bytes(data))
        try:
            version = header_version(record)
        except IntegrityError:
            continue
        if version != 1:
            with pytest.raises(IntegrityError):
                list(store.keys())
            break
    else:
        pytest.skip("no single-byte change of this header names another version")


def test_a_forced_destroy_leaves_no_shredded_name_readable_in_the_index(
    store: FilesStore, account_keys: AccountKeys
) -> None:
    store.put("patient: jane doe", b"diagnosis")  # a record name is PII, like its value
    account_keys.rotate(store.binding.purpose)
    store.put("other", b"x")
    assert sorted(store.keys()) == ["other", "patient: jane doe"]  # index sealed under v2
    account_keys.destroy(store.binding.purpose, 1, force=True)  # shred all of version 1
    # the index (under v2) only ever names objects under the primary when it is written
    assert set(store._index.load().values()) == {"other"}
    assert sorted(store.keys()) == ["other"]


def test_the_index_is_laid_out_as_formats_md_says(store: FilesStore) -> None:
    """docs/formats.md: SRNX, 0x01, u32 BE count, the names, their u16 BE key lengths, the keys."""
    store.put("k", b"v")
    store.put("longer key", b"v")
    list(store.keys())
    data = (store.binding.directory / INDEX_FILE).read_bytes()
    plaintext, _ = store._sealer.open(data, INDEX_RECORD)
    names = sorted((store._name(key.encode()), key.encode()) for key in ("k", "longer key"))
    assert plaintext == b"".join(
        [
            b"SRNX\x01",
            (2).to_bytes(4, "big"),
            *(bytes.fromhex(name) for name, _ in names),
            *(len(key).to_bytes(2, "big") for _, key in names),
            *(key for _, key in names),
        ]
    )


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from files_store_support import bind, open_files_store
    from strongroom.errors import StrongroomError
    from strongroom.testing import MemoryKeyProvider, make_account_keys
    kek = bytes.fromhex(sys.argv[2])
    keys = make_account_keys(Path(sys.argv[1]), provider=MemoryKeyProvider(kek=kek))
    keys.unlock()
    with open_files_store(bind(keys)) as store:
        try:
            if sys.argv[3] == "ls":
                print(sorted(store.keys()))
            elif sys.argv[3] == "blob":
                print(b"".join(store.get_blob("b")))
            else:
                print(store.get("k"))
        except StrongroomError as exc:
            sys.exit(f"error: {exc}")
    """
)


@pytest.mark.parametrize(
    ("where", "operation", "outcome"),
    [
        (JOURNAL_FILE, "get", "not a regular file"),
        (JOURNAL_FILE, "ls", "not a regular file"),
        (INDEX_FILE, "ls", "['b', 'k']"),  # an unusable index is rebuilt (and replaced)
        ("record", "get", "not a regular file"),
        ("record", "ls", "not a regular file"),
        ("blob", "blob", "not a regular file"),
        ("blob key file", "ls", "not a regular file"),
    ],
)
def test_a_fifo_planted_where_the_store_expects_a_file_does_not_hang_it(
    tmp_path: Path, where: str, operation: str, outcome: str
) -> None:
    kek = os.urandom(32)
    keys = make_account_keys(tmp_path / "alice", provider=MemoryKeyProvider(kek=kek))
    keys.create()
    with open_files_store(bind(keys)) as store:
        store.put("k", b"v")
        store.put_blob("b", [b"blob"])
        target = {
            "record": path_of(store, "k"),
            "blob": path_of(store, "b", "blobs"),
            "blob key file": path_of(store, "b", "blobs").with_suffix(".name"),
        }.get(where, store.binding.directory / where)
    keys.close()
    target.unlink(missing_ok=True)
    os.mkfifo(target, 0o600)
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path / "alice"), kek.hex(), operation],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=HANG_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"a FIFO as the {where} hangs '{operation}' (as keys.json no longer does)")
    assert outcome in child.stdout + child.stderr
    if outcome == "not a regular file":
        assert child.returncode != 0
        assert child.stderr.startswith("error: ")
        assert child.stderr.count("\n") == 1  # one line, no traceback
