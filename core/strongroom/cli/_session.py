"""Opening the configured stack for a command, with the CLI's account override."""

from __future__ import annotations

import contextlib
import dataclasses
import re

from strongroom._stack import Strongroom
from strongroom.config import NAME_PATTERN, Config, load_config
from strongroom.errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from strongroom.store import Store


def config_for(args: argparse.Namespace) -> Config:
    """The config ``--config`` names, with ``--account`` applied."""
    config = load_config(args.config)
    if args.account is not None:
        if not re.fullmatch(NAME_PATTERN, args.account):
            raise UsageError(
                "--account expects a lower-case name: letters, digits, '-' and '_', "
                "starting with a letter"
            )
        config = dataclasses.replace(config, account=args.account)
    return config


@contextlib.contextmanager
def opened(args: argparse.Namespace, *, unlock: bool = True) -> Iterator[Strongroom]:
    """The stack, unlocked unless ``unlock`` is false; locked and closed afterwards.

    Each provider asks its user at most once in the command; what it read
    is wiped when the command ends.

    :raises strongroom.errors.KeyUnavailableError: no provider could unlock it.
    """
    with Strongroom(config_for(args)) as stack:
        if any(choice.policy == "presence" for choice in stack.config.backends):
            from strongroom.cli._presence import TerminalPresence  # imports pluggy: only then

            stack.plugin_manager.register(TerminalPresence(stack), "strongroom-cli-presence")
        if not unlock:
            yield stack
            return
        with stack.keys.holding_secrets():
            stack.keys.unlock()
            yield stack


def store_named(stack: Strongroom, name: str) -> Store:
    """The store configured as ``[stores.<name>]``.

    :raises UsageError: no such store is configured.
    """
    names = stack.config.instances("stores")
    if name not in names:
        known = ", ".join(names) or "none"
        raise UsageError(f"no store {name!r} is configured (configured: {known})")
    return stack.store(name)
