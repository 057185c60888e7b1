"""No interleaving of two sessions or processes leaves a key sealed under a master key that is gone.

Each session stands for a process: it unlocks once and keeps its master key
in memory while another rotates the master key or a keyset through the same
record.  Interleavings are enumerated or drawn from a printed seed, never
left to timing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from accounts import PURPOSES, make_keys
from strongroom.keys import AccountKeys, KeyState
from strongroom.testing import MemoryKeyProvider

Op = Callable[[AccountKeys], None]


def _raise_floor(keys: AccountKeys) -> None:
    keys.raise_floor("store:notes", keys.primary_version("store:notes"))


OPS: dict[str, Op] = {
    "use notes": lambda keys: keys.data_key("store:notes") and None,
    "use files": lambda keys: keys.data_key("files") and None,
    "rotate notes": lambda keys: keys.rotate("store:notes") and None,
    "rotate files": lambda keys: keys.rotate("files") and None,
    "rotate master": lambda keys: keys.rotate_master() and None,
    "raise floor": _raise_floor,
}


class Observed:
    """Every data key version a session saw, to compare with what a fresh session opens."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, int], bytes] = {}

    def note(self, keys: AccountKeys) -> None:
        for keyset in keys.status().keysets:
            for version, (_suite, state, _master) in keyset.versions.items():
                if state is KeyState.ACTIVE:
                    key = keys.data_key(keyset.purpose, version)
                    raw = key.material.export_raw(reason="compare in test")
                    seen = self.keys.setdefault((keyset.purpose, version), raw)
                    assert seen == raw, f"{keyset.purpose} v{version} changed"


def _check_account(directory: Path, provider: MemoryKeyProvider, observed: Observed) -> None:
    """A fresh session opens every key anyone saw, all sealed under the current master key."""
    record = json.loads((directory / "keys.json").read_text())
    for purpose, keyset in record["keysets"].items():
        for number, entry in keyset["versions"].items():
            assert entry["master_version"] == record["master_version"], (purpose, number)
    fresh = make_keys(directory, {"main": provider})
    fresh.unlock()
    observed.note(fresh)
    fresh.rotate_master()  # used to fail for good once a key was sealed under a stale master
    observed.note(fresh)
    fresh.close()


def _account(directory: Path, provider: MemoryKeyProvider) -> None:
    keys = make_keys(directory, {"main": provider})
    keys.create()
    keys.ensure(*PURPOSES)
    keys.close()


def _interleavings(a: Sequence[str], b: Sequence[str]) -> Iterator[list[tuple[int, str]]]:
    """Every order of ``a`` and ``b`` that keeps each one's own order."""
    for slots in itertools.combinations(range(len(a) + len(b)), len(a)):
        first, second = iter(a), iter(b)
        yield [
            (0, next(first)) if i in slots else (1, next(second)) for i in range(len(a) + len(b))
        ]


def _run(directory: Path, provider: MemoryKeyProvider, schedule: list[tuple[int, str]]) -> None:
    _account(directory, provider)
    sessions = [make_keys(directory, {"main": provider}) for _ in range(2)]
    observed = Observed()
    for session in sessions:
        session.unlock()
        observed.note(session)
    for who, op in schedule:
        OPS[op](sessions[who])
        observed.note(sessions[who])
    for session in sessions:
        session.close()
    _check_account(directory, provider, observed)


APP = ["use notes", "rotate notes", "use notes"]
ADMIN = ["rotate master", "rotate files", "rotate master"]


@pytest.mark.parametrize(
    "schedule",
    list(_interleavings(APP, ADMIN)),
    ids=lambda s: "/".join(f"{who}:{op}" for who, op in s),
)
def test_every_interleaving_of_an_app_and_an_admin_keeps_every_key(
    tmp_path: Path, schedule: list[tuple[int, str]]
) -> None:
    _run(tmp_path / "alice", MemoryKeyProvider(), schedule)


@pytest.mark.parametrize("seed", range(40))
def test_random_interleavings_of_two_sessions_keep_every_key(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    schedule = [(rng.randrange(2), rng.choice(list(OPS))) for _ in range(10)]
    try:
        _run(tmp_path / "alice", MemoryKeyProvider(), schedule)
    except Exception as exc:
        raise AssertionError(f"seed {seed}, schedule {schedule}: {exc!r}") from exc


WORKER = textwrap.dedent(
    """
    import hashlib, sys
    sys.path.insert(0, sys.argv[2])
    from accounts import make_keys
    from strongroom.testing import MemoryKeyProvider

    keys = make_keys(__import__("pathlib").Path(sys.argv[1]),
                     {"main": MemoryKeyProvider(kek=bytes(32))})
    keys.unlock()
    print("ready", flush=True)
    for line in sys.stdin:
        op = line.strip()
        try:
            if op == "rotate master":
                keys.rotate_master()
            elif op == "rotate notes":
                keys.rotate("store:notes")
            key = keys.data_key("store:notes")
            digest = hashlib.sha256(key.material.export_raw(reason="test")).hexdigest()
            print(f"ok {key.version} {digest}", flush=True)
        except Exception as exc:
            print(f"error {type(exc).__name__}: {exc}", flush=True)
    """
)


APP_LOOP = ["rotate notes", "use"]
ADMIN_LOOP = ["rotate master", "rotate notes", "use"]


@pytest.mark.parametrize("seed", range(3))
def test_two_processes_rotating_keys_and_master_keep_every_key(tmp_path: Path, seed: int) -> None:
    """As two CLI loops of 'keys rotate --purpose store:notes' and 'keys rotate --master' did."""
    directory = tmp_path / "alice"
    provider = MemoryKeyProvider(kek=bytes(32))
    _account(directory, provider)
    tests_dir = str(Path(__file__).parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), tests_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    rng = random.Random(seed)
    seen: dict[int, str] = {}
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for step in range(24):
            who = rng.randrange(2)
            # worker 1 is the admin loop; worker 0 the application, which never rotates the master
            op = rng.choice(ADMIN_LOOP if who else APP_LOOP)
            worker = workers[who]
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write(op + "\n")
            worker.stdin.flush()
            answer = worker.stdout.readline().split()
            assert answer[0] == "ok", f"seed {seed}, step {step}, worker {who}, {op}: {answer}"
            version, digest = int(answer[1]), answer[2]
            assert seen.setdefault(version, digest) == digest, f"seed {seed}: v{version} changed"
    finally:
        for worker in workers:
            worker.communicate(timeout=30)
    observed = Observed()
    fresh = make_keys(directory, {"main": provider})
    fresh.unlock()
    for version, digest in seen.items():
        raw = fresh.data_key("store:notes", version).material.export_raw(reason="test")
        assert hashlib.sha256(raw).hexdigest() == digest
    fresh.close()
    _check_account(directory, provider, observed)
