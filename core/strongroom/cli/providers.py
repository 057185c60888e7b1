"""``strongroom providers``: which providers wrap the master key; add and remove them."""

from __future__ import annotations

import argparse

from strongroom.cli import status
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError


def list_providers(args: argparse.Namespace) -> int:
    return status.run(args)


def add(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        if args.name not in stack.config.instances("key_providers"):
            raise UsageError(f"configure [key_providers.{args.name}] before adding it")
        if args.name in stack.keys.status().providers:
            raise UsageError(f"provider {args.name!r} already wraps the master key")
        stack.keys.rewrap_for(args.name)
    line = f"provider {args.name!r} now also unlocks account {stack.config.account!r}"
    emit(args, {"added": args.name}, [line])
    return 0


def remove(args: argparse.Namespace) -> int:
    with opened(args) as stack:  # the record's MAC needs the master key
        stack.keys.remove_provider(args.name)
    line = f"provider {args.name!r} no longer unlocks account {stack.config.account!r}"
    emit(args, {"removed": args.name}, [line])
    return 0
