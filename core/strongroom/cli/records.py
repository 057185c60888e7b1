"""``put``, ``get``, ``rm`` and ``ls``: records and blobs in a configured store."""

from __future__ import annotations

import argparse

from strongroom.cli._io import chunks, reading, stdout
from strongroom.cli._output import emit
from strongroom.cli._session import opened, store_named


def put(args: argparse.Namespace) -> int:
    with reading(args.source) as source, opened(args) as stack:  # a bad input fails first
        store = store_named(stack, args.store)
        if args.blob:
            store.put_blob(args.key, chunks(source))
        else:
            store.put(args.key, source.read())
    emit(args, {"stored": args.key, "store": args.store}, [f"stored {args.key!r} in {args.store}"])
    return 0


def get(args: argparse.Namespace) -> int:
    out = stdout()  # a closed stdout fails before anything is unlocked
    with opened(args) as stack:
        for chunk in store_named(stack, args.store).get_any(args.key):  # verified, chunk by chunk
            out.write(chunk)
        out.flush()
    return 0


def remove(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        store_named(stack, args.store).delete(args.key)
    emit(args, {"removed": args.key}, [f"removed {args.key!r} from {args.store}"])
    return 0


def list_keys(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        keys = list(store_named(stack, args.store).keys(args.prefix))
    emit(args, {"store": args.store, "keys": keys}, keys)
    return 0
