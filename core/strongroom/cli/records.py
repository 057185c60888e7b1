"""``put``, ``put-many``, ``get``, ``rm`` and ``ls``: records and blobs in a configured store."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from strongroom.cli._io import chunks, reading, stdout
from strongroom.cli._output import emit, printable
from strongroom.cli._session import opened, store_named
from strongroom.errors import UsageError


def put(args: argparse.Namespace) -> int:
    with reading(args.source) as source, opened(args) as stack:  # a bad input fails first
        store = store_named(stack, args.store)
        if args.blob:
            store.put_blob(args.key, chunks(source))
        else:
            store.put(args.key, source.read())
    emit(args, {"stored": args.key, "store": args.store}, [f"stored {args.key!r} in {args.store}"])
    return 0


def put_many(args: argparse.Namespace) -> int:
    """``put-many STORE [FILE]``: JSON lines, each ``{"key": ..., "value": ...}`` or ``value_b64``.

    Every line is read and checked before anything is unlocked; the store
    then takes them as one batch (all or nothing in the ``files`` store).
    """
    with reading(args.source) as source:
        items = list(_json_lines(source.read().splitlines(), source.label))
    with opened(args) as stack:
        store_named(stack, args.store).put_many(items)
    stored = len({key for key, _ in items})  # the last of a key wins
    emit(
        args, {"stored": stored, "store": args.store}, [f"stored {stored} records in {args.store}"]
    )
    return 0


def _json_lines(lines: list[bytes], label: str) -> Iterator[tuple[str, bytes]]:
    """``(key, value)`` per non-blank line; a bad line is a usage error naming only its number."""
    import base64
    import binascii
    import json

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, text, encoded = item["key"], item.get("value"), item.get("value_b64")
            if not isinstance(key, str) or (text is None) == (encoded is None):
                raise ValueError
            if text is not None:
                value = text.encode("utf-8")
            else:
                value = base64.b64decode(encoded, validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise UsageError(
                f"{label} line {number}: expected a JSON object with a string 'key' and "
                "either 'value' (text) or 'value_b64' (base64)"
            ) from None
        yield key, value


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
    stdout()  # a closed stdout fails before anything is unlocked (or the name index rewritten)
    with opened(args) as stack:
        keys = list(store_named(stack, args.store).keys(args.prefix))
    emit(args, {"store": args.store, "keys": keys}, [printable(key) for key in keys])
    return 0
