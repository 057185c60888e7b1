"""Where the pkcs11 provider's user PIN comes from: a secret reference, else the terminal.

The PIN is never a setting's value or a command-line argument (both are
visible to others): the ``pin`` setting names a reference (``file:``,
``env:``, ``command:``), resolved by :class:`~strongroom.settings.SecretRef`
as the passphrase provider's are; without one, standard input must be a
terminal and the PIN is asked for without echo.  An application can hand
its own source over with ``use_secret``.
"""

from __future__ import annotations

import getpass

from strongroom.errors import KeyLockedError
from strongroom.key_provider import SecretRequest, SecretSource
from strongroom.settings import SecretRef
from strongroom_plugins.providers._passphrase_sources import stdin_is_tty

__all__ = ["pin_source"]


def pin_source(reference: SecretRef | None, token_label: str) -> SecretSource:
    """The configured source: ``reference`` if set, else a prompt on a terminal."""

    def source(request: SecretRequest) -> bytes:
        if reference is not None:
            return reference.resolve()
        return _prompt(request, token_label)

    return source


def _prompt(request: SecretRequest, token_label: str) -> bytes:
    where = f"token {token_label!r} (account {request.context.account!r})"
    if not stdin_is_tty():
        raise KeyLockedError(
            f"no PIN available for {where}: set the provider's pin setting "
            "(file:, env: or command:), or run on a terminal to be asked"
        )
    try:
        return getpass.getpass(f"User PIN for {where}: ").encode()
    except EOFError:
        raise KeyLockedError(f"no PIN was entered for {where}") from None
