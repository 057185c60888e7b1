"""The CLI's user-presence check: the passphrase of one of the account's passphrase providers.

A config that sets ``policy = "presence"`` on a provider or a store makes
strongroom ask ``strongroom_request_user_presence`` first.  An application
answers with its own prompt (a biometric, a PIN pad); the CLI registers
this answer, which asks on the terminal for the passphrase of a
``passphrase`` provider that wraps the account and checks it by opening
that provider's wrap with a probe of its own (never the provider that
unlocks, so nothing it holds is reused).  With no terminal, or no such
provider, it does not answer, and the key is refused.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, cast

from strongroom.errors import StrongroomError
from strongroom.hookspecs import hookimpl

if TYPE_CHECKING:
    from strongroom._stack import Strongroom
    from strongroom.key_provider import KeyProvider


class TerminalPresence:
    """Answers presence requests for one stack by asking on its terminal."""

    def __init__(self, stack: Strongroom) -> None:
        self._stack = stack

    @hookimpl(trylast=True)
    def strongroom_request_user_presence(self, account: str, reason: str) -> bool | None:
        name = self._passphrase_provider()
        if name is None or not _stdin_is_tty():
            return None
        try:
            typed = getpass.getpass(
                f"Confirm you are present ({reason}): passphrase for {account!r} ({name}): "
            )
        except EOFError:
            return False
        resolved = self._stack.resolve(f"key_providers.{name}")
        probe = cast("KeyProvider", resolved.backend(resolved.settings))
        probe.use_secret(lambda _request: typed)
        blob, context = self._stack.keys.master_wrap(name)
        try:
            secret = bytearray(probe.unwrap(blob, context))
        except StrongroomError:
            return False
        secret[:] = bytes(len(secret))
        return True

    def _passphrase_provider(self) -> str | None:
        """A configured ``passphrase`` provider that wraps the account, if there is one."""
        wrapping = self._stack.keys.status().providers
        for name in self._stack.config.instances("key_providers"):
            if name in wrapping and self._stack.config.choice(f"key_providers.{name}").use == (
                "passphrase"
            ):
                return name
        return None


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
