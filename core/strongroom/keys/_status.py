"""What ``strongroom status`` and ``strongroom keys list`` show of a hierarchy.

Reports are plain frozen values built from the record alone, so they
carry names, versions and states but never key material, wrapped or not,
and can be shown, logged or compared freely.
"""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.keys._record import KeyRecord, KeyState

__all__ = ["KeyStatus", "KeysetStatus", "describe"]


@dataclass(frozen=True)
class KeysetStatus:
    """A keyset as ``strongroom keys list`` shows it: no key material."""

    purpose: str
    primary: int
    versions: dict[int, tuple[str, KeyState, int]]  # version -> (suite, state, master version)


@dataclass(frozen=True)
class KeyStatus:
    """The account's hierarchy as ``strongroom status`` shows it."""

    account: str
    master_version: int
    providers: dict[str, str]  # config name -> backend name
    keysets: list[KeysetStatus]
    unlocked: bool


def describe(account: str, record: KeyRecord, *, unlocked: bool) -> KeyStatus:
    """The status of ``account`` as ``record`` holds it."""
    return KeyStatus(
        account=account,
        master_version=record.master_version,
        providers={name: wrap.use for name, wrap in record.wraps.items()},
        keysets=[
            KeysetStatus(
                purpose,
                keyset.primary,
                {
                    number: (entry.suite, entry.state, entry.master_version)
                    for number, entry in sorted(keyset.versions.items())
                },
            )
            for purpose, keyset in sorted(record.keysets.items())
        ],
        unlocked=unlocked,
    )
