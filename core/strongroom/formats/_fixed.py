"""Fixed salts and nonce prefixes, for known-answer vectors and tests only.

The formats draw every salt and nonce prefix from ``os.urandom``; the
public API has no way to choose them, so no caller can reuse one by
mistake.  A test that must reproduce published bytes fixes them here for
the duration of a ``with`` block, in this context (thread or task) only.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["fixed", "fixed_randomness"]

_FIXED: contextvars.ContextVar[tuple[bytes | None, bytes | None]] = contextvars.ContextVar(
    "strongroom_fixed_randomness", default=(None, None)
)


@contextlib.contextmanager
def fixed_randomness(
    *, salt: bytes | None = None, nonce_prefix: bytes | None = None
) -> Iterator[None]:
    """Within this block, each new chunked object's salt, and each new ``Subkeys``'s
    first batch salt and nonce prefix, are these instead of random ones."""
    token = _FIXED.set((salt, nonce_prefix))
    try:
        yield
    finally:
        _FIXED.reset(token)


def fixed() -> tuple[bytes | None, bytes | None]:
    """``(salt, nonce prefix)`` a test fixed, each ``None`` when random."""
    return _FIXED.get()
