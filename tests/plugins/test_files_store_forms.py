"""A key switching between record and blob is never missed by a read or a listing.

Another writer switches the key's form at every step the reader takes
(each directory scan and each file it opens), one step per run.  The
writer runs in a thread: if the reader holds the store's lock at that
step, the writer is let block on it and the reader carries on, as a second
process would; otherwise the reader waits until the switch is complete.
No step is left to timing.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from files_store_support import bind, open_files_store

from strongroom.keys import AccountKeys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores.files import FilesStore

KEY = "switching"
RECORD, BLOB = b"as a record", b"as a blob, " * 1000
#: A generous bound on the time a writer needs: the test fails rather than hangs.
SETTLE = 30.0


@pytest.fixture
def stores(account_keys: AccountKeys) -> Iterator[tuple[FilesStore, FilesStore]]:
    """The reader's store and the writer's: two instances, as two processes have."""
    with (
        open_files_store(bind(account_keys)) as reader,
        open_files_store(bind(account_keys)) as writer,
    ):
        reader.put("a record", b"1")
        reader.put_blob("z blob", [b"2"])
        yield reader, writer


class Interleaving:
    """Runs ``switch`` in a thread at the reader's ``at``-th step; counts the steps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reader = threading.get_ident()
        self.steps = 0
        self.at = 0
        self.switch: Callable[[], None] = lambda: None
        self._settled = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        scandir, open_for_reading, flock = os.scandir, _disk.open_for_reading, fcntl.flock

        def scanning(path: Any) -> Any:
            self._step()
            return scandir(path)

        def opening(path: Path) -> BinaryIO | None:
            self._step()
            return open_for_reading(path)

        def locking(fd: int, operation: int) -> None:
            if threading.get_ident() == self.writer and operation == fcntl.LOCK_EX:
                try:
                    return flock(fd, operation | fcntl.LOCK_NB)
                except BlockingIOError:
                    self._settled.set()  # the reader holds the lock: let it go on
            return flock(fd, operation)

        monkeypatch.setattr(os, "scandir", scanning)
        monkeypatch.setattr(_disk, "open_for_reading", opening)
        monkeypatch.setattr(fcntl, "flock", locking)

    @property
    def writer(self) -> int | None:
        return None if self._thread is None else self._thread.ident

    def run(self, read: Callable[[], object], *, at: int, switch: Callable[[], None]) -> object:
        """``read()`` with ``switch`` made at its ``at``-th step (0: never)."""
        self.steps, self.at, self.switch = 0, at, switch
        self._settled.clear()
        self._thread = None
        try:
            return read()
        finally:
            if self._thread is not None:
                self._thread.join(SETTLE)
                assert not self._thread.is_alive(), "the switch never finished"
                self._thread = None
            if self._errors:
                raise self._errors.pop()

    def _step(self) -> None:
        if threading.get_ident() != self.reader:
            return
        self.steps += 1
        if self.steps == self.at:
            self._thread = threading.Thread(target=self._switch)
            self._thread.start()
            assert self._settled.wait(SETTLE), "the switch neither finished nor blocked"

    def _switch(self) -> None:
        try:
            self.switch()
        except BaseException as exc:  # re-raised in the reader's thread
            self._errors.append(exc)
        finally:
            self._settled.set()


def make_record(store: FilesStore) -> None:
    store.put(KEY, RECORD)


def make_blob(store: FilesStore) -> None:
    store.put_blob(KEY, [BLOB[:5000], BLOB[5000:]])


SWITCHES = {"record to blob": (make_record, make_blob), "blob to record": (make_blob, make_record)}


@pytest.mark.parametrize("direction", SWITCHES)
def test_a_listing_never_leaves_out_a_key_that_switches_form(
    stores: tuple[FilesStore, FilesStore], monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    reader, writer = stores
    before, after = SWITCHES[direction]
    interleaving = Interleaving(monkeypatch)
    before(reader)
    assert interleaving.run(lambda: list(reader.keys()), at=0, switch=lambda: None)
    steps = interleaving.steps
    assert steps >= 6, "the listing scans directories and opens files"
    for at in range(1, steps + 1):
        before(reader)
        listed = interleaving.run(lambda: list(reader.keys()), at=at, switch=lambda: after(writer))
        assert listed == ["a record", "switching", "z blob"], f"switched at step {at} of {steps}"


@pytest.mark.parametrize("direction", SWITCHES)
def test_get_any_never_misses_a_key_that_switches_form(
    stores: tuple[FilesStore, FilesStore], monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    reader, writer = stores
    before, after = SWITCHES[direction]
    interleaving = Interleaving(monkeypatch)

    def read() -> bytes:
        return b"".join(reader.get_any(KEY))

    before(reader)
    assert interleaving.run(read, at=0, switch=lambda: None) in {RECORD, BLOB}
    steps = interleaving.steps
    assert steps >= 1
    for at in range(1, steps + 1):
        before(reader)
        value = interleaving.run(read, at=at, switch=lambda: after(writer))
        assert value in {RECORD, BLOB}, f"switched at step {at} of {steps}"


def test_get_any_reads_either_form_and_reports_a_missing_key(
    stores: tuple[FilesStore, FilesStore],
) -> None:
    reader, _ = stores
    make_record(reader)
    assert list(reader.get_any(KEY)) == [RECORD]
    make_blob(reader)
    assert b"".join(reader.get_any(KEY)) == BLOB
    reader.delete(KEY)
    with pytest.raises(KeyError, match="no record or blob"):
        reader.get_any(KEY)
