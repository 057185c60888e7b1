"""The CLI's fixed costs against ``python -c "import cryptography"``, and the unlock agent.

Each round is a fresh process.  The account is made once with a passphrase
(Argon2id); "before unlock" runs ``get`` with no passphrase to be had, so it
stops where it would unlock: what it costs to get there.  The floor is a CLI
with no framework at all: argparse parses the command line and tomllib reads
the same config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import Sizes, pedantic

Env = dict[str, str]
STRONGROOM = str(Path(sys.executable).with_name("strongroom"))
FLOOR = """\
import argparse, os, tomllib
parser = argparse.ArgumentParser()
parser.add_argument("words", nargs="*")
parser.parse_args()
with open(os.environ["STRONGROOM_CONFIG"], "rb") as config:
    tomllib.load(config)
"""
COMMANDS = {
    'python -c "import cryptography"': ([sys.executable, "-c", "import cryptography"], 0),
    "floor: argparse and tomllib read the config": ([sys.executable, "-c", FLOOR], 0),
    "strongroom --version": ([STRONGROOM, "--version"], 0),
    "strongroom status": ([STRONGROOM, "status"], 0),
    "strongroom get, before unlock": ([STRONGROOM, "get", "notes", "k"], 4),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A config, an account with one record, and the environment that finds them and unlocks."""
    home = tmp_path_factory.mktemp("cli")
    config = home / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{home}"\naccount = "bench"\n[stores.notes]\nuse = "files"\n'
    )
    passphrase = home / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    # Bytecode as a real install has it (pip compiles at install): the first round writes it.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STRONGROOM") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env = {**clean, "STRONGROOM_CONFIG": str(config), "STRONGROOM_PASSPHRASE_FILE": str(passphrase)}
    run([STRONGROOM, "init"], env)
    run([STRONGROOM, "put", "notes", "k"], env, stdin=b"v")
    return env


def run(command: list[str], env: Env, expect: int = 0, stdin: bytes = b"") -> None:
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, check=False)
    assert done.returncode == expect, done.stderr


@pytest.mark.parametrize("subject", COMMANDS)
def test_fixed_cost(benchmark: BenchmarkFixture, sizes: Sizes, env: Env, subject: str) -> None:
    command, expect = COMMANDS[subject]
    if expect == 4:  # before unlock: nothing to unlock with
        env = {k: v for k, v in env.items() if k != "STRONGROOM_PASSPHRASE_FILE"}
    benchmark.group = "cli: fixed cost of one command"
    benchmark.extra_info.update(subject=subject)
    warmup = 1 if sizes.cli_rounds > 1 else 0
    pedantic(benchmark, run, command, env, expect, rounds=sizes.cli_rounds, warmup_rounds=warmup)


@pytest.mark.parametrize("subject", ["strongroom get through the agent", "strongroom get"])
def test_agent_burst(benchmark: BenchmarkFixture, sizes: Sizes, env: Env, subject: str) -> None:
    if agent := subject.endswith("agent"):
        run([STRONGROOM, "unlock"], env)

    def burst() -> None:
        for _ in range(sizes.burst):
            run([STRONGROOM, "get", "notes", "k"], env)

    benchmark.group = f"cli: burst of {sizes.burst} gets"
    benchmark.extra_info.update(subject=subject, ops=sizes.burst)
    try:
        pedantic(benchmark, burst, rounds=1)
    finally:
        if agent:
            run([STRONGROOM, "lock"], env)
