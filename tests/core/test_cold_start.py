"""What a command imports before it unlocks: none of the heavy modules unlocking does not need.

``strongroom get`` with no passphrase to be had stops where it would unlock
(exit 4); ``strongroom status`` never unlocks.  Each runs in a fresh
interpreter that calls ``main()`` and then lists ``sys.modules``, twice: the
first run fills the entry-point cache, the second is what every later
command costs.  No timing is measured here (``bench/test_cli.py`` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_data import FILE_VARIABLE, PASSPHRASE, clean_environ, passphrase_table, write_private

#: ``main(argv)`` in a fresh interpreter; prints the exit code, then every module imported.
PROBE = """\
import sys
from strongroom.cli.main import main
code = main(sys.argv[1:])
print(code)
print(" ".join(sorted(sys.modules)))
"""
AEAD = "cryptography.hazmat.primitives.ciphers.aead"
METADATA = "importlib.metadata"
LONG_AGO_NS = 1_000_000_000 * 1_000_000_000  # 2001: settled, as far as the cache can tell


class Probe:
    """Runs the CLI in-process in fresh interpreters, for one account."""

    def __init__(self, home: Path) -> None:
        config = home / "strongroom.toml"
        config.write_text(
            f'[strongroom]\ndata_dir = "{home}"\naccount = "alice"\n'
            + passphrase_table("main")
            + '[stores.notes]\nuse = "files"\n'
        )
        self.cache = home / "cache"
        self.env = clean_environ(STRONGROOM_CONFIG=str(config), XDG_CACHE_HOME=str(self.cache))
        # the working directory is on sys.path (python -c): it must not look just changed
        self.cwd = home / "cwd"
        self.cwd.mkdir()
        os.utime(self.cwd, ns=(LONG_AGO_NS, LONG_AGO_NS))
        passphrase = write_private(home / "passphrase", PASSPHRASE)
        for argv in (["init"], ["put", "notes", "k", os.devnull]):
            self.run(*argv, env={FILE_VARIABLE: str(passphrase)}, expect=0)

    def run(self, *argv: str, env: dict[str, str] | None = None, expect: int) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *argv],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        code, modules = done.stdout.splitlines()[-2:]
        assert int(code) == expect, done.stderr
        return set(modules.split())

    def warm(self, *argv: str, expect: int) -> set[str]:
        """What ``argv`` imports once the entry-point cache is filled."""
        self.run(*argv, expect=expect)
        assert list(self.cache.glob("strongroom/entry-points-*.json")), (
            "no entry-point cache was written: something on sys.path changed in the last "
            "two seconds"
        )
        return self.run(*argv, expect=expect)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Probe:
    return Probe(tmp_path_factory.mktemp("cold"))


@pytest.fixture(scope="module")
def get_before_unlock(probe: Probe) -> set[str]:
    return probe.warm("get", "notes", "k", expect=4)


@pytest.fixture(scope="module")
def status(probe: Probe) -> set[str]:
    return probe.warm("status", expect=0)


def imported(modules: set[str], name: str) -> bool:
    return name in modules or any(module.startswith(f"{name}.") for module in modules)


@pytest.mark.parametrize(
    "heavy",
    [
        AEAD,
        METADATA,
        "pydantic",
        "stevedore",
        "pluggy",
        "subprocess",  # only a command: secret reference runs a program
        "getpass",  # only asking on a terminal
    ],
)
def test_get_stops_at_unlocking_before_importing_it(
    get_before_unlock: set[str], heavy: str
) -> None:
    assert not imported(get_before_unlock, heavy)


def test_get_imports_no_store_or_format_before_unlocking(get_before_unlock: set[str]) -> None:
    """The store is built only once the account is unlocked."""
    assert "strongroom_plugins.stores.files" not in get_before_unlock
    assert not imported(get_before_unlock, "strongroom.formats")


@pytest.mark.parametrize("heavy", [METADATA, "pydantic", "stevedore"])
def test_status_reads_entry_points_from_the_cache(status: set[str], heavy: str) -> None:
    assert not imported(status, heavy)


def test_a_cold_cache_is_filled_from_importlib_metadata(tmp_path: Path, probe: Probe) -> None:
    cold = probe.run("status", env={"XDG_CACHE_HOME": str(tmp_path)}, expect=0)
    assert imported(cold, METADATA)
    assert list(tmp_path.glob("strongroom/entry-points-*.json"))
