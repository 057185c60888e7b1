"""``strongroom sync``: push a store's outbox and changes, pull the server's, report.

Also the store's sync key (``--new-key``, ``--export-key``, ``--import-key``)
and its parked operations (``--retry``, ``--drop``).  The report goes to
standard output; when the server could not be reached or an operation is
parked it is followed by a one-line error and exit 1.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from strongroom.cli._output import emit
from strongroom.cli._session import opened, store_named
from strongroom.errors import TransportError, UsageError

if TYPE_CHECKING:
    import argparse

    from strongroom._stack import Strongroom
    from strongroom.sync import Syncer, SyncReport


def run(args: argparse.Namespace) -> int:
    """Sync the store (or manage its key or parked operations) and print what happened."""
    from strongroom.sync import Syncer

    with opened(args) as stack:
        name = _store_name(stack, args.store)
        store_named(stack, name)
        syncer = Syncer(stack, name)
        try:
            if args.new_key or args.export_key or args.import_key:
                return _key(args, syncer)
            if args.retry or args.drop:
                return _repair(args, syncer)
            if stack.config.signing is None:
                raise UsageError(
                    "sync needs a [signing] table: the sync server refuses unsigned requests"
                )
            report = syncer.sync()
        finally:
            syncer.close()
    _print(args, name, report)
    if report.offline:
        raise TransportError(
            f"the sync server could not be reached; {report.queued} operation(s) stay queued "
            "for the next sync"
        )
    if report.parked:
        raise TransportError(
            f"{len(report.parked)} operation(s) are parked: retry them with "
            "--retry ID or drop them with --drop ID"
        )
    return 0


def _store_name(stack: Strongroom, name: str | None) -> str:
    if name is not None:
        return name
    stores = stack.config.instances("stores")
    if len(stores) != 1:
        raise UsageError("name the store to sync with --store (the config has several or none)")
    return stores[0]


def _key(args: argparse.Namespace, syncer: Syncer) -> int:
    if sum(bool(flag) for flag in (args.new_key, args.export_key, args.import_key)) > 1:
        raise UsageError("use one of --new-key, --export-key and --import-key")
    if args.new_key:
        syncer.create_key()
        emit(args, {"sync_key": "created"}, [f"sync key created for store {syncer.name!r}"])
    elif args.import_key:
        exported = sys.stdin.read() if args.import_key == "-" else _read(args.import_key)
        syncer.import_key(exported)
        emit(args, {"sync_key": "imported"}, [f"sync key imported for store {syncer.name!r}"])
    else:
        exported = syncer.export_key() + "\n"
        if args.export_key == "-":
            sys.stdout.write(exported)
        else:
            _write_new(args.export_key, exported.encode())
        print(
            "strongroom: warning: the sync key is exposed: whoever holds it reads everything "
            "this store syncs; move it to the other device yourself, never through the server",
            file=sys.stderr,
        )
    return 0


def _repair(args: argparse.Namespace, syncer: Syncer) -> int:
    if args.retry and args.drop:
        raise UsageError("use one of --retry and --drop")
    if args.retry:
        syncer.outbox.retry(args.retry, send_stale=args.send_stale)
        emit(args, {"retried": args.retry}, [f"operation {args.retry} will be sent again"])
    else:
        syncer.outbox.drop(args.drop)
        emit(args, {"dropped": args.drop}, [f"operation {args.drop} dropped unsent"])
    return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as source:
            return source.read(256)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path}: cannot read an exported sync key ({type(exc).__name__})"
        ) from None


def _write_new(path: str, data: bytes) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: the sync key is written only to a new file") from None
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())


def _print(args: argparse.Namespace, name: str, report: SyncReport) -> None:
    data = {
        "store": name,
        "pushed": report.pushed,
        "pulled": report.pulled,
        "conflicts": report.conflicts,
        "parked": [
            {"id": operation.id, "reason": operation.parked, "error": operation.error}
            for operation in report.parked
        ],
        "queued": report.queued,
        "chunks_sent": report.chunks_sent,
        "chunks_fetched": report.chunks_fetched,
        "offline": report.offline,
    }
    lines = [
        f"{name}: pushed {len(report.pushed)}, pulled {len(report.pulled)}, "
        f"conflicts {len(report.conflicts)}, parked {len(report.parked)}, "
        f"queued {report.queued}"
    ]
    lines += [
        f"conflict: {key} (the local write is kept as a conflict copy)" for key in report.conflicts
    ]
    lines += [
        f"parked: {operation.id} ({operation.parked}): {operation.error}"
        for operation in report.parked
    ]
    emit(args, data, lines)
