"""Retention: a store's records are deleted once they are older than its config says.

``retention = "30d"`` in a ``[stores.<name>]`` table is generic, read by the
config beside ``use`` rather than by each store's settings, because what it
promises (data is forgotten) must not depend on a store author remembering
a field.  The store keeps the promise through
:meth:`~strongroom.store.Store.purge_expired`; a store that does not
override it cannot, so a config setting retention on it is refused when
the stack is built: fail closed, never a silent promise to forget.

The stack purges a store the first time it hands it out in a process, and
``strongroom purge`` does on demand; each purge that deleted something is
an audit event naming the store and the count, never a key.
"""

from __future__ import annotations

import re
import time

from strongroom.audit import AuditEvent
from strongroom.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from strongroom.store import Store

__all__ = [
    "RETENTION_KEY",
    "RULE",
    "UNITS",
    "describe",
    "parse_retention",
    "purge",
    "require_support",
    "supports_retention",
]

#: The generic key of a ``[stores.<name>]`` table.
RETENTION_KEY = "retention"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A positive whole number, no sign or leading zero, and one unit; up to ~27 years in seconds.
_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhd])")
RULE = 'expected a duration: a positive whole number and a unit s, m, h or d, such as "30d"'


def parse_retention(value: object, *, source: str, table: str) -> float:
    """Seconds from ``"12h"``, ``"30d"``...; the error names where, never the value.

    :raises ConfigError: not a string of that form (zero and negatives included).
    """
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(RULE, source=source, location=f"[{table}] key {RETENTION_KEY!r}")
    return float(int(match[1]) * UNITS[match[2]])


def describe(seconds: float) -> str:
    """``seconds`` in the largest unit that divides it, as the config would say it."""
    whole = int(seconds)
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"  # pragma: no cover - s divides everything


def supports_retention(store_class: type[Store]) -> bool:
    """Whether the class overrides ``purge_expired`` (the base only raises)."""
    import inspect

    from strongroom.store import Store

    found = inspect.getattr_static(store_class, "purge_expired", None)
    return found is not None and found is not inspect.getattr_static(Store, "purge_expired")


def require_support(store_class: type[Store], *, use: str, source: str, table: str) -> None:
    """Refuse a retention the store cannot keep.

    :raises ConfigError: naming the file, table and key.
    """
    if not supports_retention(store_class):
        raise ConfigError(
            f"store backend {use!r} cannot purge records by age; remove the key or use "
            "a store that can (files, sqlcipher)",
            source=source,
            location=f"[{table}] key {RETENTION_KEY!r}",
        )


def purge(store: Store, seconds: float, *, now: float | None = None) -> int:
    """Delete what ``store`` holds that was last written over ``seconds`` ago; how many went.

    An audit event ``data.purged`` follows a purge that deleted something.

    :raises strongroom.errors.StoreError: the medium refused the change.
    """
    cutoff = (time.time() if now is None else now) - seconds
    count = store.purge_expired(cutoff)
    if count:
        binding = store.binding
        details = {"store": binding.name, "count": str(count), "reason": "retention"}
        binding.audit(AuditEvent("data.purged", binding.account, details=details))
    return count
