"""What every benchmark section shares: interleaved timing, targets, results, sections.

Timings are noisy on a small shared machine: every subject is run in the same
rounds as its references, one after the other, and only medians are compared.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MiB = 1 << 20
GiB = 1 << 30

Direction = Literal["at least", "under", "at most"]


@dataclass(frozen=True)
class Target:
    """A bound on a figure: ``at least`` 1.5x, ``under`` 1.5x, ``at most`` 64 MiB."""

    direction: Direction
    bound: float
    unit: str = "x"

    def met(self, value: float) -> bool:
        if self.direction == "at least":
            return value >= self.bound
        if self.direction == "under":
            return value < self.bound
        return value <= self.bound

    def margin(self, value: float) -> float:
        """How far ``value`` is on the good side of the bound: 1 is exactly on it."""
        if self.direction == "at least":
            return value / self.bound
        return self.bound / value if value > 0 else float("inf")

    def __str__(self) -> str:
        sign = {"at least": ">=", "under": "<", "at most": "<="}[self.direction]
        unit = "x" if self.unit == "x" else f" {self.unit}"
        return f"{sign} {self.bound:g}{unit}"


@dataclass(frozen=True)
class Result:
    """One figure of the summary: a ratio (or a size) with its target, if it has one."""

    item: str
    measure: str
    value: float
    #: How the value reads in the tables, e.g. "1.84x" or "7.2 MiB".
    shown: str
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    @property
    def met_text(self) -> str:
        return {None: "-", True: "yes", False: "NO"}[self.met]

    @property
    def target_text(self) -> str:
        return "(reported)" if self.target is None else str(self.target)


@dataclass
class Section:
    """A part of the report: its Markdown and the results it adds to the summary."""

    title: str
    lines: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    #: Figures the plot shows, by name (MB/s for the throughput panel).
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]], align: str = "") -> None:
        """A Markdown table; ``align`` holds one of ``l``/``r`` per column (default ``l``)."""
        marks = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join(marks) + "|")
        self.lines.extend("| " + " | ".join(row) + " |" for row in rows)
        self.lines.append("")

    def result_rows(self, results: list[Result]) -> None:
        self.table(
            ["measure", "figure", "target", "met"],
            [[r.measure, r.shown, r.target_text, r.met_text] for r in results],
            "lrll",
        )
        self.results.extend(results)


def interleaved(
    subjects: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    prepare: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Wall times of each subject over ``rounds``, run one after another in every round.

    Odd rounds run the subjects in reverse order, so that none always follows
    the same neighbour.  ``prepare(name)`` runs untimed before each run (remove an output, flush
    dirty pages); a full garbage collection precedes every run, so one
    subject's garbage is not collected on another's time.
    """
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    order = list(subjects.items())
    for index in range(rounds):
        for name, run in order if index % 2 == 0 else reversed(order):
            if prepare is not None:
                prepare(name)
            gc.collect()
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """``min-max`` of a sample, for the tables."""
    return f"{min(values):.3g}-{max(values):.3g}"


def ratio_text(value: float) -> str:
    return f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"
