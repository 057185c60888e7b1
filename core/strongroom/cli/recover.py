"""``strongroom recover``: open an account with its recovery key and re-enrol lost providers."""

from __future__ import annotations

import argparse

from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from strongroom._stack import Strongroom


def run(args: argparse.Namespace) -> int:
    """Unlock through the recovery provider only, then wrap afresh for each ``--enrol``.

    Re-enrolling a provider whose root is lost makes it a new root (a new
    keyring item, say) and replaces its wrap; the master key, data keys and
    data stay as they are.
    """
    with opened(args, unlock=False) as stack, stack.keys.holding_secrets():
        recovery = _recovery_provider(stack, args.recovery)
        for name in args.enrol:
            if name not in stack.config.instances("key_providers"):
                raise UsageError(f"configure [key_providers.{name}] before enrolling it")
            if name == recovery:
                raise UsageError(
                    f"{name!r} is the recovery provider; 'strongroom keys rotate --provider "
                    f"{name}' makes a new recovery key"
                )
        stack.keys.unlock(provider=recovery)
        for name in args.enrol:
            stack.keys.rewrap_for(name)
        account = stack.config.account
    lines = [f"the recovery key ({recovery!r}) unlocks account {account!r}"]
    lines += [f"provider {name!r} re-enrolled: it unlocks the account again" for name in args.enrol]
    if not args.enrol:
        lines.append("re-enrol a lost provider with --enrol NAME")
    emit(args, {"recovered_with": recovery, "enrolled": args.enrol}, lines)
    return 0


def _recovery_provider(stack: Strongroom, named: str | None) -> str:
    """``named``, or the one recovery-only provider that wraps the account."""
    wrapping = stack.keys.status().providers
    if named is not None:
        if named not in wrapping:
            raise UsageError(f"provider {named!r} does not wrap account {stack.config.account!r}")
        return named
    found = [
        name
        for name in stack.config.instances("key_providers")
        if name in wrapping and stack.key_provider(name).traits.recovery_only
    ]
    if len(found) != 1:
        raise UsageError(
            "name the recovery provider with --with NAME"
            if found
            else f"account {stack.config.account!r} has no recovery key: configure a "
            "provider with use = \"recovery-key\" and run 'strongroom providers add NAME'"
        )
    return found[0]
