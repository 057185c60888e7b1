"""strongroom's benchmarks (pytest-benchmark, see ``nox -s bench``), and what they share.

``python -m bench.report`` turns their JSON into ``docs/benchmarks.md``'s tables and plot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

MiB = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does: the full run, or the quick smoke run (``--quick``)."""

    stream: int  # bytes of the file-to-file streams
    stream_rounds: int
    store_counts: tuple[int, ...]  # records in the store benchmarks
    blob: int  # bytes of the blob read in ranges
    cli_rounds: int
    burst: int  # gets in the agent burst
    database_count: int  # records in the database benchmarks
    unlock_rounds: int  # unlocks timed per key provider
    server_clients: int  # concurrent keep-alive HTTPS connections pushing to the sync server
    server_pushes: int  # signed pushes per timed round, across them
    server_rounds: int  # timed rounds of each throughput benchmark (runs drift: a median of many)
    sync_records: int  # records synced between two devices
    sync_blob: int  # bytes of the blob synced between two devices
    sync_rounds: int  # rounds of each sync server benchmark


FULL = Sizes(
    1 << 30, 3, (1_000, 10_000, 100_000), 256 * MiB, 20, 100, 100_000, 50,
    8, 2_000, 7, 10_000, 256 * MiB, 3,
)  # fmt: skip
QUICK = Sizes(4 * MiB, 1, (100,), 4 * MiB, 1, 3, 100, 2, 4, 40, 1, 50, MiB, 1)


def sizes_of(config: pytest.Config) -> Sizes:
    """The sizes of this run: ``--quick`` or full."""
    return QUICK if config.getoption("quick") else FULL


def make_file(path: Path, size: int) -> Path:
    """``size`` random bytes, written a MiB at a time."""
    with open(path, "wb") as handle:
        for offset in range(0, size, MiB):
            handle.write(os.urandom(min(MiB, size - offset)))
    return path


def pedantic(benchmark: BenchmarkFixture, target: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``benchmark.pedantic``, typed: one call per round, ``setup`` untimed before each."""
    return benchmark.pedantic(target, args, **kw)  # type: ignore[no-untyped-call,no-any-return]
