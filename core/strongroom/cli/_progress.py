"""A one-line progress display on stderr, shown only on a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts bytes (or items) towards an optional total and redraws at most 10 times a second."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "MiB") -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.unit = unit
        self._enabled = sys.stderr.isatty()
        self._drawn = 0.0

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self._enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw()

    def set(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.advance(done - self.done)

    def finish(self) -> None:
        if self._enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self) -> None:
        scale = (1 << 20) if self.unit == "MiB" else 1
        done = self.done / scale
        text = f"\r{self.label}: {done:,.0f} {self.unit}"
        if self.total:
            text += f" of {self.total / scale:,.0f} ({100 * self.done / self.total:.0f}%)"
        sys.stderr.write(text)
        sys.stderr.flush()
