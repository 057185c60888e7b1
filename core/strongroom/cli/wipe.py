"""``strongroom wipe``: destroy an account's wrapped keys first, then its data."""

from __future__ import annotations

import argparse
import sys

from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError


def run(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("wipe destroys the account's keys and data for good; add --yes")
    with opened(args, unlock=False) as stack:
        account, directory = stack.config.account, stack.config.account_dir
        unconfigured = stack.wipe()
    for name in unconfigured:
        print(
            f"strongroom: warning: provider {name} is not configured here; "
            f"erase its root for account {account!r} by hand if it keeps one",
            file=sys.stderr,
        )
    line = f"account {account!r} wiped: keys destroyed, provider roots erased, {directory} removed"
    data = {"wiped": account, "directory": str(directory), "roots_left": unconfigured}
    emit(args, data, [line])
    return 0
