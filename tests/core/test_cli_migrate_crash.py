"""``migrate`` killed at any point: the plaintext stays whole, the target all or nothing.

A child process runs the migration of a source whose last rows live only
in an uncheckpointed write-ahead log, and either stops at a named step
(waiting on its stdin) or runs free; the parent kills it there or after a
seeded random delay.  Then the plaintext must read back exactly as before
(unless the migration got as far as removing it, in which case the target
holds everything), the target must hold none of the application's tables
or all of them with every row, and a second run must finish the job.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlite_sources import APP_NAMES, make_source, read_plaintext
from test_cli_migrate import KEY, app_objects, open_target

from strongroom.cli import migrate

pytest.importorskip("sqlcipher3")
from strongroom_plugins.sqlcipher.connection import connect

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from strongroom.cli import migrate
    from test_cli_migrate import open_target

    target, source, stop_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def reached(step):
        if step == stop_at:
            print(f"stopped {step}", flush=True)
            sys.stdin.read()  # killed here

    migrate.reached = reached
    conn = open_target(target)
    print("ready", flush=True)
    migrate._migrate(conn, source, "vault", removing=True)
    print("done", flush=True)
    """
)

STEPS = ("attached", "copying", "copied", "committed", "verified", "checkpointed", "removing")
COMMITTED = STEPS.index("committed")


def start(target: Path, source: Path, stop_at: str) -> subprocess.Popen[str]:
    here = str(Path(__file__).parent)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(source), stop_at, here],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.close()
    child.stdout.close()


def check_after_kill(target: Path, source: Path, expected: dict[str, Any]) -> bool:
    """The invariants; returns whether the target holds the import."""
    from sqlite_sources import dump

    conn = connect(target, KEY)
    try:
        objects = app_objects(conn)
        imported = objects == set(APP_NAMES)
        assert imported or objects == set(), objects
        if imported:
            assert dump(conn) == expected
        assert conn.execute("SELECT count(*) FROM strongroom_records").fetchone() == (1,)
    finally:
        conn.close()
    if source.exists():
        assert read_plaintext(source) == expected
    else:
        assert imported  # removed only after the import was committed and verified
    return imported


def finish(target: Path, source: Path, expected: dict[str, Any]) -> None:
    """A second run completes the migration, whatever the first left."""
    from sqlite_sources import dump

    conn = open_target(target)
    try:
        if source.exists():
            migrate._migrate(conn, source, "vault", removing=True)
        assert dump(conn) == expected
    finally:
        conn.close()
    assert not source.exists()
    assert [p for p in source.parent.iterdir() if p.name.startswith(source.name)] == []


@pytest.mark.parametrize("step", STEPS)
def test_a_migration_killed_at_any_step_loses_nothing(tmp_path: Path, step: str) -> None:
    source, target = tmp_path / "app.db", tmp_path / "store.db"
    expected = make_source(source, "wal", rows=20)
    child = start(target, source, step)
    assert child.stdout is not None
    lines = [child.stdout.readline().strip() for _ in range(2)]
    assert lines == ["ready", f"stopped {step}"]
    kill(child)

    imported = check_after_kill(target, source, expected)
    assert imported == (STEPS.index(step) >= COMMITTED)
    assert source.exists()  # every named step comes before the file's own removal
    finish(target, source, expected)


def test_a_migration_killed_at_random_times_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("MIGRATE_KILL_SEED", random.randrange(1 << 32)))
    chance = random.Random(seed)
    outcomes = []
    for attempt in range(8):
        source, target = tmp_path / f"app{attempt}.db", tmp_path / f"store{attempt}.db"
        expected = make_source(source, "wal", rows=6000)
        child = start(target, source, "never")
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(chance.uniform(0, 0.2))  # the migration takes about 0.15 s
        kill(child)
        try:
            outcomes.append(check_after_kill(target, source, expected))
            finish(target, source, expected)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, attempt {attempt}: {exc}") from exc
    print(f"seed {seed}: imported before the kill in {sum(outcomes)} of {len(outcomes)}")
