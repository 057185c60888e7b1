"""Batches in the ``files`` store (``put_many``, re-encryption): all or nothing, one fsync."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterator

import pytest
from files_store_support import bind, header_version, path_of, temporaries

from strongroom.errors import IntegrityError, RecordNotFoundError, UsageError
from strongroom.keys import AccountKeys
from strongroom.store import Store
from strongroom_plugins.stores import _disk, _journal, _reencrypt
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._journal import JOURNAL_FILE
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

#: A generous bound on a step another thread takes: the test fails rather than hangs.
SETTLE = 30.0


def items(count: int, prefix: str = "k") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{index:04}", os.urandom(100)) for index in range(count)]


@pytest.mark.parametrize("count", [1, 10, 200])
def test_a_batch_costs_the_same_syncs_whatever_its_size(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    syncs: list[str] = []
    fsync, sync_filesystem = os.fsync, _disk.sync_filesystem
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(
        _disk, "sync_filesystem", lambda path: (syncs.append("syncfs"), sync_filesystem(path))[1]
    )
    batch = items(count)
    store.put_many(batch)
    assert sorted(syncs) == ["fsync"] * 3 + ["syncfs"]
    assert {key: store.get(key) for key, _ in batch} == dict(batch)


def test_an_invalid_key_stores_nothing(store: FilesStore) -> None:
    store.put("k0001", b"before")
    with pytest.raises(UsageError):
        store.put_many([*items(5), ("x" * 70000, b"too long a key")])
    assert list(store.keys()) == ["k0001"]
    assert store.get("k0001") == b"before"
    assert temporaries(store.binding.directory) == set()


def test_a_failing_source_stores_nothing_and_is_raised_as_it_is(store: FilesStore) -> None:
    def source() -> Iterator[tuple[str, bytes]]:
        yield from items(5)
        raise OSError("the source went away")

    with pytest.raises(OSError, match="the source went away"):
        store.put_many(source())
    assert list(store.keys()) == []
    assert temporaries(store.binding.directory) == set()


def test_a_batch_sealed_under_a_version_rotated_out_is_sealed_again(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    commit = Installer.commit

    def rotating_first(self: Installer, *args: object, **kwargs: object) -> bool:
        monkeypatch.setattr(Installer, "commit", commit)
        keys.rotate(purpose)  # between sealing and the commit
        return commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Installer, "commit", rotating_first)
    batch = items(3)
    store.put_many(batch)
    assert {header_version(path_of(store, key)) for key, _ in batch} == {2}
    assert {key: store.get(key) for key, _ in batch} == dict(batch)
    assert temporaries(store.binding.directory) == set()


def test_a_reader_never_sees_half_a_batch(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader comes while the batch is half installed: it waits for the lock, then sees all."""
    store.put_many([("first", b"old"), ("second", b"old")])
    half_done, reader_blocked = threading.Event(), threading.Event()
    installed: list[str] = []
    replace, flock = os.replace, fcntl.flock
    writer = threading.current_thread().ident

    def installing(source: str, target: str) -> None:
        replace(source, target)
        if threading.get_ident() == writer and "records" in os.fspath(target):
            installed.append(target)
            if len(installed) == 1:
                half_done.set()
                assert reader_blocked.wait(SETTLE)

    def locking(fd: int, operation: int) -> None:
        if threading.get_ident() != writer and operation == fcntl.LOCK_EX:
            try:
                return flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                reader_blocked.set()  # the writer holds the lock: let it finish
        return flock(fd, operation)

    monkeypatch.setattr(_journal.os, "replace", installing)
    monkeypatch.setattr(fcntl, "flock", locking)
    read: list[bytes] = []
    reader = threading.Thread(
        target=lambda: (half_done.wait(SETTLE), read.extend([store.get("second")]))
    )
    reader.start()
    store.put_many([("first", b"new"), ("second", b"new")])
    reader.join(SETTLE)
    assert len(installed) == 2
    assert reader_blocked.is_set()
    assert read == [b"new"]


def test_a_tampered_committed_journal_is_refused_and_applies_nothing(store: FilesStore) -> None:
    store.put("k", b"kept")
    journal = store.binding.directory / JOURNAL_FILE
    journal.write_bytes(b"SRBJ\x01" + b"\0" * 40)
    with pytest.raises(IntegrityError, match="not a complete batch journal"):
        store.get("k")
    journal.unlink()
    assert store.get("k") == b"kept"


class DefaultBatchStore(FilesStore):
    """A store that leaves ``put_many`` to the interface's default."""

    put_many = Store.put_many


def test_the_default_put_many_is_a_loop_of_put_and_not_atomic(
    account_keys: AccountKeys,
) -> None:
    settings = FilesStoreSettings(chunk_size=4096)
    with DefaultBatchStore(settings, binding=bind(account_keys)) as store:
        store.put_many(items(3))
        assert list(store.keys()) == ["k0000", "k0001", "k0002"]
        with pytest.raises(UsageError):
            store.put_many([("stored", b"1"), ("x" * 70000, b"2"), ("never", b"3")])
        assert store.get("stored") == b"1"
        with pytest.raises(RecordNotFoundError):
            store.get("never")


@pytest.mark.parametrize("in_parallel", [False, True], ids=["one by one", "by threads"])
def test_a_pass_frees_the_records_it_replaced_when_it_ends_however_it_ends(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch, in_parallel: bool
) -> None:
    """Replaced records keep a temporary name until the pass ends, then go, even if abandoned."""
    monkeypatch.setattr(_reencrypt, "BATCH", 3)
    monkeypatch.setattr(_reencrypt, "FREE_IN_PARALLEL", 2 if in_parallel else 100)
    batch = items(7)
    store.put_many(batch)
    root, purpose = store.binding.directory, store.binding.purpose
    aside: list[str | None] = []
    link_aside = _disk.link_aside

    def linking(directory: str, name: str) -> str | None:
        aside.append(link_aside(directory, name))
        return aside[-1]

    monkeypatch.setattr(_disk, "link_aside", linking)
    store.binding.keys.rotate(purpose)
    passing = store.reencrypt()
    for done, _total in passing:
        if done == 3:  # the first batch is in, its old records only renamed aside
            break
    assert len(aside) == 3
    assert {path for path in aside if path} == {os.fspath(p) for p in temporaries(root)}
    passing.close()  # abandoned: what it renamed aside goes all the same
    assert temporaries(root) == set()
    assert list(store.reencrypt())[-1] == (len(batch),) * 2  # the next pass finishes
    assert len(aside) == len(batch)  # it replaced only the 4 the first pass had not
    assert temporaries(root) == set()
    assert {header_version(path_of(store, key)) for key, _ in batch} == {2}
    assert {key: store.get(key) for key, _ in batch} == dict(batch)


def test_a_pass_on_a_file_system_without_hard_links_frees_at_once(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    batch = items(5)
    store.put_many(batch)
    store.binding.keys.rotate(store.binding.purpose)
    monkeypatch.setattr(os, "link", refused)
    assert list(store.reencrypt())[-1] == (len(batch),) * 2
    assert temporaries(store.binding.directory) == set()
    assert {key: store.get(key) for key, _ in batch} == dict(batch)
