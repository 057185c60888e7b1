"""The ``postgresql`` server storage as a service: several processes, and PostgreSQL restarting.

Concurrency is real (OS processes released together by a go file); the
restarts are driven by events, never by sleeping: the writer signals how
far it got, and the test stops or starts the server at those points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postgres import PASSWORD, PASSWORD_VARIABLE, Postgres, running_postgres
from strongroom.errors import ServerStorageUnavailableError
from strongroom.server_storage import Change
from strongroom_plugins.server_stores.postgresql import MIGRATIONS, PostgresServerStorage

WORKER = Path(__file__).with_name("server_storage_worker.py")
_RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


def open_storage(postgres: Postgres, dbname: str, **overrides: Any) -> PostgresServerStorage:
    table = postgres.settings(dbname, **overrides)
    return PostgresServerStorage(PostgresServerStorage.Settings.from_table(table))


def run_workers(postgres: Postgres, tmp_path: Path, jobs: list[dict[str, Any]]) -> list[Any]:
    """Start one process per job, release them together, and return what each printed."""
    go = tmp_path / "go"
    settings = {k: v for k, v in postgres.settings().items() if k != "password"}
    env = {**os.environ, PASSWORD_VARIABLE: PASSWORD}
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent), *sys.path])
    processes = []
    for job in jobs:
        full = {**job, "go": str(go), "settings": {**settings, "dbname": job["dbname"]}}
        argv = [sys.executable, str(WORKER), json.dumps(full)]
        processes.append(subprocess.Popen(argv, stdout=subprocess.PIPE, env=env))
    go.touch()
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        results.append(json.loads(out))
    return results


def test_two_processes_migrating_at_once_both_start_cleanly(
    postgres: Postgres, tmp_path: Path
) -> None:
    database = postgres.create_database("migrate_race")
    results = run_workers(postgres, tmp_path, [{"action": "open", "dbname": database}] * 4)
    assert results == [{"acked": []}] * 4
    with postgres.admin(database) as conn:
        rows = conn.execute("SELECT version FROM strongroom_migrations ORDER BY version")
        assert [row[0] for row in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_two_processes_pushing_to_one_account_lose_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    database = postgres.create_database("push_race")
    open_storage(postgres, database).close()  # the schema, so the race is over seqs alone
    jobs = [{"action": "push", "dbname": database, "name": n, "count": 150} for n in "ab"]
    first, second = run_workers(postgres, tmp_path, jobs)
    assert "error" not in first
    assert "error" not in second
    for acked in (first["acked"], second["acked"]):
        assert acked == sorted(acked)
        assert len(acked) == 150
    assert sorted(first["acked"] + second["acked"]) == list(range(1, 301))  # distinct, gap-free
    with open_storage(postgres, database) as storage:
        page = storage.pull("shared", after=0, limit=1000)
    pulled = {entry.key: entry.seq for entry in page.entries}
    expected = {f"a-{n}": seq for n, seq in enumerate(first["acked"])}
    expected |= {f"b-{n}": seq for n, seq in enumerate(second["acked"])}
    assert pulled == expected


def push_until_it_works(storage: PostgresServerStorage, change: Change) -> int:
    """Retry through the outage, as a client would; the seq once acknowledged."""
    deadline = threading.Event()
    timer = threading.Timer(_RECOVERY_S, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            try:
                return storage.push("alice", [change])[0].seq
            except ServerStorageUnavailableError:
                continue
    finally:
        timer.cancel()
    pytest.fail(f"the pool did not recover within {_RECOVERY_S} s")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_between_pushes_loses_no_acknowledged_write(
    postgres: Postgres, mode: str
) -> None:
    database = postgres.create_database(f"restart_{mode}")
    with open_storage(postgres, database, connect_timeout=1.0) as storage:
        before = storage.push("alice", [Change("before", b"1"), Change("doc", b"2")])
        postgres.stop(mode)
        try:
            with pytest.raises(ServerStorageUnavailableError) as refused:
                storage.push("alice", [Change("during", b"3")])
            for text in (str(refused.value), repr(refused.value)):
                assert "\n" not in text
                assert "Traceback" not in text
                assert PASSWORD not in text
            assert refused.value.__cause__ is None
            assert refused.value.__suppress_context__
        finally:
            postgres.start()
        after = push_until_it_works(storage, Change("after", b"4"))
        entries = {e.key: (e.seq, e.value) for e in storage.pull("alice").entries}
    assert entries == {
        "before": (before[0].seq, b"1"),
        "doc": (before[1].seq, b"2"),
        "after": (after, b"4"),
    }


def test_a_crash_during_pushes_loses_no_acknowledged_write(postgres: Postgres) -> None:
    database = postgres.create_database("crash_during")
    acked: dict[str, int] = {}
    warmed, failed, recovered, stop = (threading.Event() for _ in range(4))
    errors: list[BaseException] = []

    def writer(storage: PostgresServerStorage) -> None:
        n = 0
        while not stop.is_set():
            key = f"k{n}"
            try:
                acked[key] = storage.push("alice", [Change(key, b"v" * 100)])[0].seq
            except ServerStorageUnavailableError:
                failed.set()
            except BaseException as exc:
                errors.append(exc)
                return
            n += 1
            if len(acked) >= 50:
                warmed.set()
            if failed.is_set() and key in acked:
                recovered.set()

    with open_storage(postgres, database, connect_timeout=1.0, pool_max=2) as storage:
        thread = threading.Thread(target=writer, args=(storage,))
        thread.start()
        try:
            assert warmed.wait(_RECOVERY_S)
            postgres.stop("immediate")  # a crash while pushes are in flight
            failed.wait(_RECOVERY_S)
            postgres.start()
            assert recovered.wait(_RECOVERY_S), "the pool did not recover"
        finally:
            stop.set()
            thread.join(_RECOVERY_S)
        assert errors == []
        assert failed.is_set()
        pulled = {e.key: e.seq for e in storage.pull("alice", limit=10_000).entries}
    assert pulled.items() >= acked.items()  # every acknowledged push, with its seq
    seqs = sorted(pulled.values())
    assert seqs == list(range(1, len(seqs) + 1))
