"""``--quick``: small sizes and one round of everything, a smoke run that never asserts timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._subjects import FULL, QUICK, Sizes


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="small sizes, one round: a smoke run")


def pytest_configure(config: pytest.Config) -> None:
    """In a quick run each benchmark runs once (after pytest-benchmark's calibration)."""
    if config.getoption("quick"):
        config.option.benchmark_min_rounds = 1
        config.option.benchmark_max_time = 0.0
        config.option.benchmark_warmup = False


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    return QUICK if pytestconfig.getoption("quick") else FULL


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")
