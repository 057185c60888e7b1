"""Chunked file-to-file streams against tink's streaming AEAD and age; peak memory of each.

Timed in this process; before each round (untimed) the output is removed and
dirty pages flushed, so no subject pays for another's write-back.  Peak
memory is read in a fresh process per job (``bench/_peak.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench._subjects import STREAMERS, Sizes, StreamKeys, make_file, pedantic, stream_job

OPS = ("encrypt", "decrypt")
ROOT = Path(__file__).parent.parent


@dataclass
class Streams:
    keys: StreamKeys
    sizes: Sizes
    plain: Path
    ciphertexts: dict[str, Path]

    def paths(self, op: str, subject: str) -> tuple[Path, Path]:
        source = self.plain if op == "encrypt" else self.ciphertexts[subject]
        return source, self.plain.with_name(f"out-{subject}-{op}")


@pytest.fixture(scope="module")
def streams(work: Path, sizes: Sizes) -> Streams:
    """The plain file, and each subject's ciphertext of it, checked to decrypt back to it."""
    keys, plain = StreamKeys.generate(), make_file(work / "plain", sizes.stream)
    made = {}
    for subject in STREAMERS:
        made[subject] = work / f"{subject}.ct"
        stream_job(keys, subject, "encrypt")(plain, made[subject])
        stream_job(keys, subject, "decrypt")(made[subject], work / "check")
        assert (work / "check").read_bytes() == plain.read_bytes()
    (work / "check").unlink()
    return Streams(keys, sizes, plain, made)


@pytest.mark.parametrize("subject", STREAMERS)
@pytest.mark.parametrize("op", OPS)
def test_stream(benchmark: BenchmarkFixture, streams: Streams, op: str, subject: str) -> None:
    source, target = streams.paths(op, subject)

    def fresh() -> None:
        target.unlink(missing_ok=True)
        os.sync()

    benchmark.group = f"stream: {op} file to file"
    benchmark.extra_info.update(subject=subject, bytes=streams.sizes.stream)
    job = stream_job(streams.keys, subject, op)
    pedantic(benchmark, job, source, target, setup=fresh, rounds=streams.sizes.stream_rounds)
    target.unlink()


@pytest.mark.parametrize("subject", STREAMERS)
@pytest.mark.parametrize("op", OPS)
def test_peak_memory(benchmark: BenchmarkFixture, streams: Streams, op: str, subject: str) -> None:
    source, target = streams.paths(op, subject)
    command = [sys.executable, "-m", "bench._peak", subject, op, str(source), str(target)]

    def child() -> str:
        keys = streams.keys.to_json()
        done = subprocess.run(
            command, input=keys, capture_output=True, text=True, cwd=ROOT, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    benchmark.group = "stream: peak memory"
    figures = json.loads(pedantic(benchmark, child))
    benchmark.extra_info.update(subject=f"{subject} {op}", **figures)
    target.unlink()
