"""``strongroom init``: create the account's key hierarchy and stores from the config."""

from __future__ import annotations

import argparse

from strongroom._stack import Strongroom
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError


def run(args: argparse.Namespace) -> int:
    with opened(args, unlock=False) as stack:
        if stack.keys.exists():
            return _add_stores(args, stack)
        stack.initialise()
        stores = stack.config.instances("stores")
        status = stack.keys.status()
    data = {
        "account": status.account,
        "directory": str(stack.config.account_dir),
        "providers": status.providers,
        "stores": stores,
        "keysets": [keyset.purpose for keyset in status.keysets],
    }
    providers = ", ".join(f"{name} ({use})" for name, use in status.providers.items())
    emit(
        args,
        data,
        [
            f"created account {status.account!r} in {stack.config.account_dir}",
            f"master key wrapped by: {providers}",
            f"stores: {', '.join(stores) or 'none configured'}",
            f"keysets: {', '.join(keyset.purpose for keyset in status.keysets)}",
        ],
    )
    return 0


def _add_stores(args: argparse.Namespace, stack: Strongroom) -> int:
    """On an existing account: create the keysets of stores added to the config since."""
    created = stack.initialise()
    if not created:
        raise UsageError(
            f"account {stack.config.account!r} already has keys in {stack.config.account_dir}, "
            "and every configured store has its keysets; refusing to overwrite them"
        )
    emit(args, {"created_keysets": created}, [f"created keysets: {', '.join(created)}"])
    return 0
