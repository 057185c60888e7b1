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
    """How much work each benchmark does: the full run as given here; ``QUICK`` for ``--quick``."""

    stream: int = 1 << 30  # bytes of the file-to-file streams
    stream_rounds: int = 3
    store_counts: tuple[int, ...] = (1_000, 10_000, 100_000)  # records in the store benchmarks
    blob: int = 256 * MiB  # bytes of the blob read in ranges
    cli_rounds: int = 20
    burst: int = 100  # gets in the agent burst
    database_count: int = 100_000  # records in the database benchmarks
    unlock_rounds: int = 50  # unlocks timed per key provider
    server_clients: int = 8  # concurrent keep-alive HTTPS connections pushing to the sync server
    server_pushes: int = 2_000  # signed pushes per timed round, across them
    server_rounds: int = 7  # timed rounds per throughput benchmark (runs drift: a median of many)
    sync_records: int = 10_000  # records synced between two devices
    sync_blob: int = 256 * MiB  # bytes of the blob synced between two devices
    sync_rounds: int = 3  # rounds of each sync server benchmark


FULL, QUICK = Sizes(), Sizes(4 * MiB, 1, (100,), 4 * MiB, 1, 3, 100, 2, 4, 40, 1, 50, MiB, 1)


def sizes_of(config: pytest.Config) -> Sizes:
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
