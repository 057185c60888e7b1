"""cProfile, summarised for the report: where a subject's time goes."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from dataclasses import dataclass

#: pstats' key of a function: (file name, line, function name).
FunctionKey = tuple[str, int, str]


@dataclass(frozen=True)
class Profile:
    """One profiled run: per function ``(calls, own seconds, cumulative seconds)``."""

    functions: dict[FunctionKey, tuple[int, float, float]]
    total: float

    @classmethod
    def of(cls, run: Callable[[], object]) -> Profile:
        profiler = cProfile.Profile()
        profiler.runcall(run)
        stats = pstats.Stats(profiler)
        raw: dict[FunctionKey, tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
        functions = {
            key: (calls, own, cumulative) for key, (_, calls, own, cumulative, _) in raw.items()
        }
        return cls(functions, float(stats.total_tt))  # type: ignore[attr-defined]

    def cumulative(self, file_suffix: str, name: str) -> float:
        """Cumulative seconds of the functions called ``name`` in files ending ``file_suffix``."""
        return sum(
            cumulative
            for (file, _, function), (_, _, cumulative) in self.functions.items()
            if file.endswith(file_suffix) and function == name
        )

    def own(self, name_part: str) -> float:
        """Own seconds of the functions whose name contains ``name_part`` (C methods too)."""
        return sum(
            own for (_, _, function), (_, own, _) in self.functions.items() if name_part in function
        )

    def top_rows(self, count: int) -> list[list[str]]:
        """``function | calls | own % | cumulative %`` of the ``count`` largest own times."""
        ranked = sorted(self.functions.items(), key=lambda item: item[1][1], reverse=True)
        return [
            [
                f"`{label(key)}`",
                f"{calls:,}",
                f"{own / self.total:.0%}",
                f"{cumulative / self.total:.0%}",
            ]
            for key, (calls, own, cumulative) in ranked[:count]
        ]


def label(key: FunctionKey) -> str:
    file, line, name = key
    if file == "~":  # a built-in or C method: the name says it all
        return name.replace("<", "").replace(">", "")
    parts = file.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line} {name}"
