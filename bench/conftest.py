"""``--quick``: small sizes and one round of everything, a smoke run that never asserts timings."""

from __future__ import annotations

import pytest

from bench import Sizes, sizes_of


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="small sizes, one round: a smoke run")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("quick"):  # each benchmark runs once (after pytest-benchmark's calibration)
        vars(config.option).update(
            benchmark_min_rounds=1, benchmark_max_time=0.0, benchmark_warmup=False
        )


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    return sizes_of(pytestconfig)
