"""``strongroom purge``: delete what stores hold past their configured retention.

The stack also purges a store with a retention whenever a command first
opens it; this command is for a schedule (cron, a timer) so that data goes
on time even when nothing else runs.  It unlocks, as other data commands
do: a store may need its key to delete, and the ``files`` store rewrites
its sealed name index so purged keys' names go too.
"""

from __future__ import annotations

from strongroom._retention import describe
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse


def run(args: argparse.Namespace) -> int:
    """Purge the named stores, or every store with a retention; print a count per store."""
    purged: dict[str, int] = {}
    lines: list[str] = []
    with opened(args) as stack:
        configured = stack.config.instances("stores")
        retentions = {name: stack.config.choice(f"stores.{name}").retention for name in configured}
        for name in args.stores:
            if name not in configured:
                known = ", ".join(configured) or "none"
                raise UsageError(f"no store {name!r} is configured (configured: {known})")
            if retentions[name] is None:
                raise UsageError(
                    f"store {name!r} has no retention; set retention in [stores.{name}]"
                )
        names = args.stores or [name for name in configured if retentions[name] is not None]
        for name in dict.fromkeys(names):
            purged[name] = count = stack.purge_expired(name)
            kept = describe(retentions[name] or 0)
            lines.append(f"{name}: purged {count} record(s) older than {kept}")
    if not names:
        lines = ["no store has a retention; nothing to purge"]
    emit(args, {"purged": purged}, lines)
    return 0
