"""Destroying an account's key record, whatever state it is in.

A wipe must not be blockable: a corrupt, edited, unreadable, missing or
half-wiped ``keys.json`` still gets every data key erased, the root of every
configured provider (and of every provider it names) destroyed, and a line
for each thing that could not be done.  Each
step is idempotent, and the record names a wrapping provider until its root
is gone, so a wipe interrupted anywhere finishes when run again.  Nothing
here needs the master key: the record is written unauthenticated, and such a
record never unlocks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from strongroom.errors import IntegrityError, StoreError, StrongroomError
from strongroom.key_provider import KeyProvider
from strongroom.keys._record import KeyRecord, KeyState, load_record, save_record

__all__ = ["destroy_record"]


def destroy_record(
    directory: Path, account: str, providers: Mapping[str, KeyProvider]
) -> list[str]:
    """Erase the data keys in ``directory``'s record, then the roots, then the wraps.

    The caller holds the record's lock.  When the record cannot be parsed,
    the root of every configured provider is destroyed instead.  Returns
    one line for each thing left undone.
    """
    left: list[str] = []
    record = _readable(directory, left)
    # Every configured root, not only those the record names: its wraps are not
    # authenticated, and a record that is missing or unreadable names none.
    wrapping = set(providers) | (set(record.wraps) if record is not None else set())
    if record is not None:
        for keyset in record.keysets.values():
            for entry in keyset.versions.values():
                entry.wrapped = None
                entry.state = KeyState.DESTROYED
        _save(directory, record, left)
    kept = set()  # still named, so that a second wipe tries them again
    for name in sorted(wrapping):
        failed = _destroy_root(account, name, providers.get(name), record)
        if failed:
            left.append(failed)
            kept.add(name)
    if record is not None:
        record.wraps = {n: w for n, w in record.wraps.items() if n in kept}
        _save(directory, record, left)
    return left


def _readable(directory: Path, left: list[str]) -> KeyRecord | None:
    """The record as on disk, or ``None`` (noted in ``left``) if it is missing or unreadable."""
    try:
        return load_record(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (IntegrityError, StoreError) as exc:
        left.append(f"{exc}; erasing the roots of every configured provider instead")
        return None


def _save(directory: Path, record: KeyRecord, left: list[str]) -> None:
    try:
        save_record(directory, record, None)
    except StoreError as exc:
        left.append(str(exc))


def _destroy_root(
    account: str, name: str, provider: KeyProvider | None, record: KeyRecord | None
) -> str:
    """Erase provider ``name``'s root for ``account``; what went wrong, or ``""``."""
    if provider is None:
        use = record.wraps[name].use if record is not None else "?"
        return (
            f"provider {name} ({use}) is not configured here; erase its root for "
            f"account {account!r} by hand if it keeps one"
        )
    try:
        provider.destroy(account)
    except StrongroomError as exc:
        return f"provider {name} could not erase its root: {exc}"
    return ""
