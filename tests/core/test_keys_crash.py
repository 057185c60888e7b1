"""Key metadata survives SIGKILL at any point of rotation: old state or new, never neither."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from strongroom.keys import AccountKeys, KeyState

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_keys_crash import open_keys

    keys = open_keys(Path(sys.argv[1]), bytes.fromhex(os.environ["TEST_KEK"]))
    keys.unlock()
    print("ready", flush=True)
    while True:
        keys.rotate("files")
        keys.rotate_master()
        keys.rotate("store:notes")
    """
)


def open_keys(directory: Path, kek: bytes) -> AccountKeys:
    """The same hierarchy in parent and child: a provider whose KEK both know."""
    from test_keys import SUITES, KekProvider

    provider = KekProvider()
    provider.kek = kek
    return AccountKeys(
        account="alice",
        directory=directory,
        providers={"main": provider},
        provider_backends={"main": "test"},
        suite_for=SUITES.__getitem__,
        default_suite="aes-256-gcm",
    )


def test_rotation_killed_at_random_points_loses_no_key(tmp_path: Path) -> None:
    chooser = random.Random(2026)
    kek = os.urandom(32)
    directory = tmp_path / "alice"
    keys = open_keys(directory, kek)
    keys.create()
    originals = {
        purpose: keys.data_key(purpose).material.export_raw(reason="test")
        for purpose in ("files", "store:notes")
    }
    keys.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))

    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, str(script), str(directory)],
            env={**os.environ, "TEST_KEK": kek.hex()},
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(chooser.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()

        survivor = open_keys(directory, kek)
        survivor.unlock()
        status = survivor.status()
        for keyset in status.keysets:
            for version, (_suite, state, _master) in keyset.versions.items():
                assert state is KeyState.ACTIVE
                survivor.data_key(keyset.purpose, version)  # every version still opens
        for purpose, material in originals.items():
            assert survivor.data_key(purpose, 1).material.export_raw(reason="test") == material
        survivor.close()
