"""``strongroom wipe``: destroy an account's wrapped keys first, then its data."""

from __future__ import annotations

import argparse
import sys

from strongroom.agent.client import lock_agents
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError


def run(args: argparse.Namespace) -> int:
    """Wipe whatever state the key record is in; each thing left behind is a warning."""
    if not args.yes:
        raise UsageError("wipe destroys the account's keys and data for good; add --yes")
    with opened(args, unlock=False) as stack:
        account, directory = stack.config.account, stack.config.account_dir
        # an agent holding this account would keep its keys past the wipe: it ends first
        agents = [state["pid"] for state in lock_agents(str(directory))]
        left = stack.wipe()
    for line in left:
        print(f"strongroom: warning: {line}", file=sys.stderr)
    line = f"account {account!r} wiped: keys destroyed, provider roots erased, {directory} removed"
    if agents:
        line += f"; unlock agent(s) {', '.join(map(str, agents))} ended first"
    if left:
        line += f" ({len(left)} warning(s) above)"
    data = {"wiped": account, "directory": str(directory), "left": left, "agents_locked": agents}
    emit(args, data, [line])
    return 0
