"""``strongroom keys``: list, rotate, re-encrypt, retire and destroy key versions."""

from __future__ import annotations

import argparse
import time
from typing import Any

from strongroom.cli import status
from strongroom.cli._output import emit
from strongroom.cli._progress import Progress
from strongroom.cli._session import opened, store_named
from strongroom.errors import UsageError
from strongroom.keys import AccountKeys, KeysetStatus
from strongroom.keys.purposes import is_rotatable


def list_keys(args: argparse.Namespace) -> int:
    return status.run(args)


def rotate(args: argparse.Namespace) -> int:
    if args.purpose and (args.master or args.provider):
        raise UsageError("--purpose rotates one keyset; it does not combine with --master")
    with opened(args) as stack:
        keys = stack.keys
        if args.master and args.provider:
            done = _change_provider_and_keys(keys, args.provider)
        elif args.master:
            version = keys.rotate_master()
            done = [f"master key is now version {version}; data keys re-wrapped, data untouched"]
        elif args.provider:
            keys.rewrap_for(args.provider)
            done = [f"master key wrapped afresh for provider {args.provider!r}"]
        else:
            purposes = [args.purpose] if args.purpose else _rotatable(keys.status().keysets)
            done = [
                f"{purpose}: new primary version {keys.rotate(purpose)}" for purpose in purposes
            ]
    emit(args, {"rotated": done}, done)
    return 0


def _change_provider_and_keys(keys: AccountKeys, provider: str) -> list[str]:
    """A passphrase change that an old copy of the record cannot follow.

    The master key is replaced and wrapped afresh for ``provider`` in one
    write, then every data keyset gets a new primary: an old ``keys.json``
    with the old passphrase opens what was written before, never after.
    """
    version = keys.rotate_master(rewrap=provider)
    done = [f"master key is now version {version}, wrapped afresh for provider {provider!r}"]
    done += [
        f"{purpose}: new primary version {keys.rotate(purpose)}"
        for purpose in _rotatable(keys.status().keysets)
    ]
    done.append("run 'strongroom keys reencrypt' to move older data to the new keys")
    return done


def _rotatable(keysets: list[KeysetStatus]) -> list[str]:
    return [keyset.purpose for keyset in keysets if is_rotatable(keyset.purpose)]


def reencrypt(args: argparse.Namespace) -> int:
    """Re-encrypt every store; report each one's count and rates.

    objects/s is the pass's objects over its time.  MB/s (10^6 bytes of
    stored objects rewritten per second) only where the store counts those
    bytes (``ReencryptProgress``); ``bytes`` and ``mb_per_second`` are null
    in ``--json`` otherwise.
    """
    summary: dict[str, dict[str, Any]] = {}
    with opened(args) as stack:
        for name in stack.config.instances("stores"):
            store = stack.store(name)
            progress = Progress(f"re-encrypting {name}", unit="records")
            done = total = 0
            rewritten: int | None = None
            started = time.perf_counter()
            for step in store.reencrypt():
                done, total = step
                rewritten = getattr(step, "rewritten_bytes", None)
                progress.set(done, total)
            seconds = max(time.perf_counter() - started, 1e-9)
            progress.finish()
            summary[name] = {
                "done": done,
                "total": total,
                "seconds": round(seconds, 6),
                "objects_per_second": round(done / seconds, 1),
                "bytes": rewritten,
                "mb_per_second": None if rewritten is None else round(rewritten / seconds / 1e6, 3),
            }
    emit(args, summary, [_reencrypted(name, info) for name, info in summary.items()])
    return 0


def _reencrypted(name: str, info: dict[str, Any]) -> str:
    rates = f"{info['objects_per_second']:,.0f} objects/s"
    if info["mb_per_second"] is not None:
        rates += f", {info['mb_per_second']:,.1f} MB/s"
    return f"{name}: {info['done']} of {info['total']} current ({rates})"


def retire(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        stack.keys.retire(args.purpose, args.version, force=args.force)
    line = f"{args.purpose} version {args.version} retired: it no longer decrypts"
    emit(args, {"retired": [args.purpose, args.version]}, [line])
    return 0


def destroy(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        stack.keys.destroy(args.purpose, args.version, force=args.force)
    line = f"{args.purpose} version {args.version} destroyed: what it encrypted is unreadable"
    emit(args, {"destroyed": [args.purpose, args.version]}, [line])
    return 0


def unreadable(args: argparse.Namespace) -> int:
    """List (or with ``--purge`` delete) the objects no active key version opens."""
    found: dict[str, list[dict[str, object]]] = {}
    purged: dict[str, int] = {}
    with opened(args) as stack:
        names = [args.store] if args.store else stack.config.instances("stores")
        for name in names:
            store = store_named(stack, name)
            try:
                found[name] = [{"id": ident, "version": v} for ident, v in store.unreadable()]
                if args.purge:
                    purged[name] = store.purge_unreadable()
            except NotImplementedError:
                message = f"store {name!r} cannot tell which objects are unreadable"
                raise UsageError(message) from None
    lines = [
        f"{name}: {item['id']} (key version {item['version']})"
        for name, items in found.items()
        for item in items
    ]
    if args.purge:
        lines = [f"{name}: deleted {count} unreadable object(s)" for name, count in purged.items()]
    emit(args, {"unreadable": found, **({"purged": purged} if args.purge else {})}, lines)
    return 0


def accept_rollback(args: argparse.Namespace) -> int:
    with opened(args, unlock=False) as stack:
        generation = stack.keys.accept_rollback()
    line = f"kept the restored key record as generation {generation}; keys it lists are live again"
    emit(args, {"generation": generation}, [line])
    return 0
