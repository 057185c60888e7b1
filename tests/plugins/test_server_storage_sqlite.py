"""The ``sqlite`` server storage: the contract, its file, its schema version, and busy errors."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from strongroom.errors import ServerStorageError, ServerStorageUnavailableError
from strongroom.server_storage import Change, ServerStorage
from strongroom.testing import ServerStorageContract
from strongroom_plugins.server_stores.sqlite import MIGRATIONS, SqliteServerStorage


def open_sqlite(path: Path, **settings: object) -> SqliteServerStorage:
    return SqliteServerStorage(
        SqliteServerStorage.Settings.from_table({"path": str(path), **settings})
    )


class TestSqliteServerStorage(ServerStorageContract):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "server" / "objects.sqlite3"

    def open_storage(self) -> ServerStorage:
        return open_sqlite(self.path)


def test_the_database_file_is_private(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "s.db") as storage:
        storage.register_device("alice", "phone.v1", b"k" * 32)
        storage.push("alice", [Change("a", b"1")])
        for path in tmp_path.iterdir():  # the -wal and -shm files too
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert "objects" not in repr(storage)
        assert repr(storage).startswith("SqliteServerStorage(")


def test_the_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_sqlite(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(ServerStorageError, match="newer than this strongroom knows"):
        open_sqlite(path)


def test_a_database_locked_by_another_writer_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_sqlite(path, busy_timeout=0.1) as storage:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(ServerStorageUnavailableError, match="busy") as refused:
                storage.push("alice", [Change("a", b"1")])
            assert "\n" not in str(refused.value)
        finally:
            other.close()
        assert not storage.push("alice", [Change("a", b"1")])[0].conflict


def test_threads_sharing_one_storage_get_distinct_seqs(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "s.db") as storage:
        seqs: list[int] = []
        barrier = threading.Barrier(4)

        def writer(name: str) -> None:
            barrier.wait()
            for n in range(25):
                seqs.extend(a.seq for a in storage.push("alice", [Change(f"{name}{n}", b"v")]))

        threads = [threading.Thread(target=writer, args=(f"t{t}",)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seqs) == list(range(1, 101))


def test_a_closed_storage_refuses_work(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path / "s.db")
    storage.close()
    storage.close()
    with pytest.raises(ServerStorageError, match="closed"):
        storage.pull("alice")
