"""Key metadata survives SIGKILL at every write step: the old record or the new, never neither.

A child process performs one change of the hierarchy and stops at a named
step of the record's write (before the temporary file's fsync, before the
rename, before the directory's fsync, after it); the parent kills it there
with SIGKILL and checks what a fresh session finds.  Every step of every
change is visited in turn, so a failure names the change and the step.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accounts import PURPOSES, make_keys
from strongroom.keys import KeyState
from strongroom.testing import MemoryKeyProvider

KEK = bytes(range(32))

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    import strongroom.durable as fs
    from accounts import make_keys
    from strongroom.testing import MemoryKeyProvider

    directory, change, stop_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    step = 0

    def checkpoint(name):
        global step
        if step == stop_at:
            print(f"stopped {name}", flush=True)
            sys.stdin.read()  # killed here
        step += 1

    def pausing(name, function):
        def call(*args, **kwargs):
            checkpoint(name)
            return function(*args, **kwargs)
        return call

    os.fsync = pausing("fsync", os.fsync)
    os.replace = pausing("rename", os.replace)
    fs.fsync_dir = pausing("directory fsync", fs.fsync_dir)

    keys = make_keys(directory, {"main": MemoryKeyProvider(kek=bytes(range(32)))})
    keys.unlock()
    {
        "rotate files": lambda: keys.rotate("files"),
        "rotate master": keys.rotate_master,
        "raise floor": lambda: keys.raise_floor("store:notes", 2),
        "retire": lambda: keys.retire("store:notes", 1, force=True),
    }[change]()
    checkpoint("after the change")
    print("finished", flush=True)
    """
)

CHANGES = ("rotate files", "rotate master", "raise floor", "retire")


def _account(directory: Path) -> dict[tuple[str, int], bytes]:
    keys = make_keys(directory, {"main": MemoryKeyProvider(kek=KEK)})
    keys.create()
    keys.ensure(*PURPOSES)
    keys.rotate("store:notes")
    originals = {
        (purpose, 1): keys.data_key(purpose, 1).material.export_raw(reason="compare in test")
        for purpose in PURPOSES
    }
    keys.close()
    return originals


def kill_at(script: Path, directory: Path, change: str, stop_at: int) -> str:
    """Run ``change`` in a child that stops at write step ``stop_at``; SIGKILL it there.

    Returns what the child said: ``"stopped <step>"``, or ``"finished"`` when
    the change has fewer steps.
    """
    child = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(directory),
            change,
            str(stop_at),
            str(Path(__file__).parents[1]),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    said = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    return said


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_killed_at_any_write_step_loses_no_key(tmp_path: Path, change: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stopped_at: list[str] = []
    for stop_at in range(20):
        directory = tmp_path / f"alice-{stop_at}"
        originals = _account(directory)
        before = json.loads((directory / "keys.json").read_text())
        said = kill_at(script, directory, change, stop_at)
        if said == "finished":
            break
        assert said.startswith("stopped "), said
        stopped_at.append(said)

        survivor = make_keys(directory, {"main": MemoryKeyProvider(kek=KEK)})
        survivor.unlock()  # the record is whole and authentic
        after = json.loads((directory / "keys.json").read_text())
        assert after["generation"] in (before["generation"], before["generation"] + 1), said
        for keyset in survivor.status().keysets:
            for version, (_suite, state, _master) in keyset.versions.items():
                if state is KeyState.ACTIVE:
                    survivor.data_key(keyset.purpose, version)  # every live version opens
        for (purpose, version), material in originals.items():
            if (purpose, version) != ("store:notes", 1):  # the one 'retire' may retire
                got = survivor.data_key(purpose, version).material.export_raw(reason="compare")
                assert got == material, f"{change}, {said}: {purpose} v{version} changed"
        survivor.rotate_master()  # and the hierarchy still changes afterwards
        survivor.close()
        leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
        assert all(name.startswith(".keys.json.") for name in leftovers), leftovers
    else:
        pytest.fail(f"{change} never finished")
    assert len(stopped_at) >= 4, stopped_at  # at least: fsync, rename, directory fsync, after
