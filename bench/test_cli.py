"""The CLI's fixed costs against ``python -c "import cryptography"``, and the unlock agent.

Each round is a fresh process (pytest-benchmark's rounds are the subprocess
loop).  The account is made once with a passphrase (Argon2id); "before
unlock" runs ``get`` with no passphrase to be had, so it stops where it would
unlock: what it costs to get there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench._subjects import Sizes, pedantic

STRONGROOM = str(Path(sys.executable).with_name("strongroom"))
COMMANDS = {
    'python -c "import cryptography"': ([sys.executable, "-c", "import cryptography"], 0),
    "strongroom --version": ([STRONGROOM, "--version"], 0),
    "strongroom status": ([STRONGROOM, "status"], 0),
    "strongroom get, before unlock": ([STRONGROOM, "get", "notes", "k"], 4),
}


@pytest.fixture(scope="module")
def env(work: Path) -> dict[str, str]:
    """A config, an account with one record, and the environment that finds them."""
    home = work / "cli"
    home.mkdir()
    (home / "strongroom.toml").write_text(
        f'[strongroom]\ndata_dir = "{home}"\naccount = "bench"\n\n[stores.notes]\nuse = "files"\n'
    )
    passphrase = home / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM")}
    env = {**clean, "STRONGROOM_CONFIG": str(home / "strongroom.toml")}
    unlocking = {**env, "STRONGROOM_PASSPHRASE_FILE": str(passphrase)}
    subprocess.run([STRONGROOM, "init"], env=unlocking, check=True, capture_output=True)
    subprocess.run(
        [STRONGROOM, "put", "notes", "k"],
        input=b"v",
        env=unlocking,
        check=True,
        capture_output=True,
    )
    return unlocking


def run(command: list[str], env: dict[str, str], expect: int = 0) -> None:
    done = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    assert done.returncode == expect, done.stderr


@pytest.mark.parametrize("subject", COMMANDS)
def test_fixed_cost(
    benchmark: BenchmarkFixture, sizes: Sizes, env: dict[str, str], subject: str
) -> None:
    command, expect = COMMANDS[subject]
    if expect == 4:  # before unlock: nothing to unlock with
        env = {k: v for k, v in env.items() if k != "STRONGROOM_PASSPHRASE_FILE"}
    benchmark.group = "cli: fixed cost of one command"
    benchmark.extra_info.update(subject=subject)
    warmup = 1 if sizes.cli_rounds > 1 else 0
    pedantic(benchmark, run, command, env, expect, rounds=sizes.cli_rounds, warmup_rounds=warmup)


@pytest.mark.parametrize("subject", ["strongroom get through the agent", "strongroom get"])
def test_agent_burst(
    benchmark: BenchmarkFixture, sizes: Sizes, env: dict[str, str], subject: str
) -> None:
    agent = subject.endswith("agent")
    if agent:
        usage = subprocess.run([STRONGROOM, "--help"], capture_output=True, text=True, check=False)
        if " unlock " not in usage.stdout:
            pytest.skip("no `strongroom unlock` agent yet")
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
