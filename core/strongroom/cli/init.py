"""``strongroom init``: create the account's key hierarchy and stores from the config."""

from __future__ import annotations

import argparse

from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.cli.files import PURPOSE as FILES_PURPOSE


def run(args: argparse.Namespace) -> int:
    with opened(args, unlock=False) as stack:
        stack.keys.create()  # refuses an existing hierarchy
        stores = stack.config.instances("stores")
        purposes = [p for name in stores for p in stack.store(name).key_purposes]
        stack.keys.ensure(*purposes, FILES_PURPOSE)
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
