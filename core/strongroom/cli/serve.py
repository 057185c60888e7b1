"""``strongroom serve``: run the reference sync server; ``serve devices``: who may sign to it.

``serve prune`` drops blob uploads their devices abandoned (never
committed, no chunk for ``--idle-days``): the server keeps an open
upload's chunks so an interrupted one resumes, and nothing else ever
frees them.  Run it from cron; a device that comes back later sends its
blob again.

The server itself lives in ``strongroom_contrib.server`` (the ``server``
extra: Starlette and uvicorn), imported by name only when the command
runs, so the core does not depend on it.  Device commands need only the
``[server_storage]`` table.  A device key is read from a file or standard
input as ``strongroom signing key --expose-key`` prints it (base64), never
from the command line, where other users could see it; it is never printed.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
import time
from typing import TYPE_CHECKING

from strongroom import Strongroom
from strongroom.cli._io import STDIN
from strongroom.cli._output import emit, printable
from strongroom.cli._session import config_for
from strongroom.errors import BackendUnavailableError, UsageError
from strongroom.signing.headers import is_key_id

if TYPE_CHECKING:
    import argparse

    from strongroom.server_storage import Device, ServerStorage

#: The module holding the server, imported by name so the core never depends on contrib.
SERVER_MODULE = "strongroom_contrib.server.run"
#: The longest key file read: a base64 key of the storage's 1024-byte maximum, and some.
_KEY_FILE_LIMIT = 4096


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM (exit 0) or SIGINT (exit 130)."""
    from importlib import import_module

    config = config_for(args)
    try:
        server = import_module(SERVER_MODULE)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"strongroom serve needs the server extra ({exc.name or 'a module'} is missing): "
            "pip install 'strongroom[server]'"
        ) from None
    code: int = server.serve(config, workers=args.workers)
    return code


def devices_add(args: argparse.Namespace) -> int:
    """Register a device's key id and MAC key under an account."""
    _check_key_id(args.key_id)
    key = _read_key(args.key_file)
    with Strongroom(config_for(args)) as stack:
        stack.server_storage.register_device(args.account_name, args.key_id, key)
    emit(
        args,
        {"account": args.account_name, "key_id": args.key_id, "active": True},
        [f"registered {args.key_id} for account {printable(args.account_name)}"],
    )
    return 0


def devices_retire(args: argparse.Namespace) -> int:
    """Stop a device from signing; its key id stays taken."""
    _check_key_id(args.key_id)
    with Strongroom(config_for(args)) as stack:
        stack.server_storage.retire_device(args.account_name, args.key_id)
    emit(
        args,
        {"account": args.account_name, "key_id": args.key_id, "active": False},
        [f"retired {args.key_id} of account {printable(args.account_name)}"],
    )
    return 0


def devices_list(args: argparse.Namespace) -> int:
    """Every device: key id, account, active or retired; never a key."""
    with Strongroom(config_for(args)) as stack:
        found = _listed(stack.server_storage)
    rows = [
        {"key_id": device.key_id, "account": device.account, "active": device.active}
        for device in found
    ]
    text = [
        f"{row['key_id']}  {printable(str(row['account']))}  "
        f"{'active' if row['active'] else 'retired'}"
        for row in rows
    ]
    emit(args, {"devices": rows}, text or ["no devices"])
    return 0


def prune(args: argparse.Namespace) -> int:
    """Drop the open uploads idle for ``--idle-days``; print how many."""
    days = args.idle_days
    if not math.isfinite(days) or days < 0:
        raise UsageError("--idle-days is a number of days, 0 or more")
    with Strongroom(config_for(args)) as stack:
        dropped = stack.server_storage.prune_uploads(time.time() - days * 86_400)
    emit(
        args,
        {"pruned_uploads": dropped, "idle_days": days},
        [f"dropped {dropped} upload(s) idle for {days:g} days or more"],
    )
    return 0


def _listed(storage: ServerStorage) -> list[Device]:
    try:
        return storage.devices()
    except NotImplementedError:
        raise UsageError(f"{type(storage).__name__} cannot list its devices") from None


def _check_key_id(key_id: str) -> None:
    if not is_key_id(key_id):
        raise UsageError(
            "KEY_ID is the wire key id as `strongroom signing key` prints it: "
            "1 to 64 of A-Z a-z 0-9 . _ - (such as phone-1.v1)"
        )


def _read_key(source: str) -> bytes:
    """The key in ``source`` (a path, or ``-`` for stdin): base64, 32 to 1024 bytes."""
    if source == "-":
        if sys.stdin is None:
            raise UsageError(f"--key-file -: {STDIN} is closed")
        text = sys.stdin.buffer.read(_KEY_FILE_LIMIT + 1)
    else:
        with open(source, "rb") as handle:  # an OSError names the path (exit 1)
            text = handle.read(_KEY_FILE_LIMIT + 1)
    try:
        if len(text) > _KEY_FILE_LIMIT:
            raise ValueError
        key = base64.b64decode(b"".join(text.split()), validate=True)
    except (ValueError, binascii.Error):
        raise UsageError(
            "--key-file holds the base64 key as `strongroom signing key --expose-key` prints it"
        ) from None
    if not 32 <= len(key) <= 1024:
        raise UsageError("a device key is 32 to 1024 bytes")
    return key
