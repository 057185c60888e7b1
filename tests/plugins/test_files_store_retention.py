"""The ``files`` store's ``purge_expired``: by file time, kept across re-encryption, crash-safe.

Objects are made old by setting their files' modification times, which is
where the store takes an object's write time from (``_expiry``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from files_store_support import (
    bind,
    blob_paths,
    files_under,
    header_version,
    open_files_store,
    path_of,
)

from strongroom.errors import RecordNotFoundError
from strongroom.keys import AccountKeys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._expiry import HINT_FILE
from strongroom_plugins.stores._layout import orphan_key_files
from strongroom_plugins.stores.files import FilesStore

HOUR = 3600.0


def age(*paths: Path, seconds: float = 2 * HOUR) -> None:
    """Make object files ``seconds`` older, and their store's ``expiry`` hint with them."""
    when = time.time() - seconds
    for path in paths:
        os.utime(path, (when, when))
    for root in {path.parents[2] for path in paths}:  # <root>/records/<2 hex>/<name>
        hint = root / HINT_FILE
        if hint.exists():
            hint.write_text(str(int(hint.read_text()) - int(seconds * 1e9)))


def written(root: Path) -> dict[Path, int]:
    """Each object file's modification time (not the index's, nor the lock's)."""
    return {path: path.stat().st_mtime_ns for path in files_under(root) if len(path.name) >= 64}


def test_purge_takes_each_object_s_age_from_its_file(store: FilesStore) -> None:
    store.put("old", b"1")
    store.put("kept", b"2")
    store.put_blob("old-blob", [b"3" * 10000])
    store.put_blob("kept-blob", [b"4"])
    age(path_of(store, "old"), *blob_paths(store, "old-blob"))
    assert store.purge_expired(time.time() - HOUR) == 2
    assert not path_of(store, "old").exists()
    assert not any(path.exists() for path in blob_paths(store, "old-blob"))
    assert list(store.keys()) == ["kept", "kept-blob"]
    assert store.get("kept") == b"2"


def test_reencryption_keeps_each_object_s_write_time(store: FilesStore) -> None:
    """A pass (batched records, blobs, key files) and a read's lazy re-seal rewrite, not write."""
    keys, purpose = store.binding.keys, store.binding.purpose
    for index in range(5):
        store.put(f"record {index}", b"r")
    store.put_blob("blob", [b"b" * 9000])
    root = store.binding.directory
    age(*written(root), seconds=3 * HOUR)
    before = written(root)
    keys.rotate(purpose)
    assert store.get("record 0") == b"r"  # re-sealed as it is read
    assert header_version(path_of(store, "record 0")) == 2
    list(store.reencrypt())
    assert {header_version(path) for path in before} == {2}
    assert written(root) == before
    assert store.purge_expired(time.time() - HOUR) == 6
    assert list(store.keys()) == []


def test_purge_keeps_an_object_rewritten_since_it_was_found(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("rewritten", b"v1")
    store.put("old", b"v1")
    age(path_of(store, "rewritten"), path_of(store, "old"))
    locked = store._installer.locked

    @contextlib.contextmanager
    def rewrite_first() -> Iterator[None]:
        monkeypatch.setattr(store._installer, "locked", locked)
        with open_files_store(bind(account_keys)) as other:
            other.put("rewritten", b"v2")  # between purge's scan and its removals
        with locked():
            yield

    monkeypatch.setattr(store._installer, "locked", rewrite_first)
    assert store.purge_expired(time.time() - HOUR) == 1
    assert store.get("rewritten") == b"v2"
    assert list(store.keys()) == ["rewritten"]


def test_purged_keys_leave_the_name_index(store: FilesStore) -> None:
    store.put("old", b"1")
    store.put_blob("old-blob", [b"2"])
    store.put("kept", b"3")
    assert list(store.keys()) == ["kept", "old", "old-blob"]  # all three are indexed
    age(path_of(store, "old"), *blob_paths(store, "old-blob"))
    assert store.purge_expired(time.time() - HOUR) == 2
    assert sorted(store._index.load().values()) == ["kept"]


def test_purge_removes_an_old_key_file_whose_blob_never_arrived(store: FilesStore) -> None:
    store.put_blob("b", [b"x"])
    blob, key_file = blob_paths(store, "b")
    blob.unlink()  # a writer killed between its two renames
    assert orphan_key_files(store.binding.directory) == [key_file]
    assert store.purge_expired(time.time() - HOUR) == 0  # not yet old
    assert key_file.exists()
    age(key_file)
    assert store.purge_expired(time.time() - HOUR) == 0  # not an object: not counted
    assert not key_file.exists()


def test_a_purge_killed_before_any_removal_leaves_each_object_whole_or_gone(
    store: FilesStore, account_keys: AccountKeys, tmp_path: Path
) -> None:
    """Killed (``os._exit`` in a forked child) before its N-th unlink, for every N.

    Afterwards every key lists and reads back whole or is gone, a blob never
    outlives its key file, and the next purge finishes the job.
    """
    values = {f"record {i}": bytes([i]) * 100 for i in range(3)}
    store.put_many(values.items())
    blobs = {f"blob {i}": bytes([i + 10]) * 9000 for i in range(2)}
    for key, value in blobs.items():
        store.put_blob(key, [value])
    store.put("kept", b"fresh")
    root = store.binding.directory
    age(*(p for p in written(root) if p != path_of(store, "kept")))
    template = tmp_path / "template"
    shutil.copytree(root, template)  # copy2: times kept
    steps = len(values) + 2 * len(blobs)
    for kill_before in range(steps + 1):
        shutil.rmtree(root)
        shutil.copytree(template, root)
        _purge_until(store, kill_before)
        assert len(written(template)) - len(written(root)) == min(kill_before, steps)
        with open_files_store(bind(account_keys)) as after:
            listed = list(after.keys())
            assert "kept" in listed
            for key in listed:
                expected = {**values, **blobs, "kept": b"fresh"}[key]
                assert b"".join(after.get_any(key)) == expected
            blob_files = {p.name for p in (root / "blobs").rglob("*") if len(p.name) == 64}
            key_files = {p.name[:64] for p in (root / "blobs").rglob("*.name")}
            assert blob_files <= key_files  # never a blob without its key
            after.purge_expired(time.time() - HOUR)
            assert list(after.keys()) == ["kept"]
            assert orphan_key_files(root) == []


def _purge_until(store: FilesStore, steps: int) -> None:
    """Run ``purge_expired`` in a child that dies before its ``steps``-th unlink (0: the first)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            taken = 0
            unlink = os.unlink

            def counted(path: object, *args: object, **kwargs: object) -> None:
                nonlocal taken
                if taken == steps:
                    os._exit(0)  # dies as SIGKILL would: no cleanup, nothing flushed
                taken += 1
                unlink(path, *args, **kwargs)  # type: ignore[arg-type]

            _disk.os.unlink = counted  # type: ignore[assignment]
            store.purge_expired(time.time() - HOUR)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_record_missing_after_purge_reads_as_not_found(store: FilesStore) -> None:
    store.put("k", b"v")
    age(path_of(store, "k"))
    store.purge_expired(time.time() - HOUR)
    with pytest.raises(RecordNotFoundError):
        store.get("k")
    with pytest.raises(RecordNotFoundError):
        store.delete("k")


def test_after_a_scan_nothing_is_scanned_until_the_oldest_object_falls_due(
    store: FilesStore,
) -> None:
    """The ``expiry`` hint: an object made older behind the store's back waits for it."""
    store.put("a", b"1")
    store.put("b", b"2")
    assert store.purge_expired(time.time() - HOUR) == 0  # a scan: the hint is written
    hint = store.binding.directory / HINT_FILE
    assert int(hint.read_text()) <= path_of(store, "a").stat().st_mtime_ns
    when = time.time() - 2 * HOUR
    os.utime(path_of(store, "a"), (when, when))  # a restore keeping an old time
    assert store.purge_expired(time.time() - HOUR) == 0  # the hint says nothing is due
    assert store.get("a") == b"1"
    assert store.purge_expired(time.time() + 1) == 2  # once the hint falls due: a scan
    assert list(store.keys()) == []


@pytest.mark.parametrize("planted", [b"", b"garbage", str(time.time_ns() + 10**15).encode()])
def test_a_missing_garbled_or_future_hint_means_scan(store: FilesStore, planted: bytes) -> None:
    store.put("a", b"1")
    age(path_of(store, "a"))
    (store.binding.directory / HINT_FILE).write_bytes(planted)
    assert store.purge_expired(time.time() - HOUR) == 1
