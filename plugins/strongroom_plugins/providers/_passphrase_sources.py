"""Where the passphrase provider's passphrase comes from: settings, environment, terminal.

Kept apart from the provider, which only derives keys and seals: a source
answers a :class:`PassphraseRequest` (which wrap, whether it is new, whether
the passphrase is being changed) with the passphrase, or refuses.
"""

from __future__ import annotations

import os
import sys
from typing import Final

from strongroom.errors import KeyLockedError, SecretSourceError, UnlockFailedError
from strongroom.key_provider import SecretRequest, SecretSource
from strongroom.settings import SecretRef

__all__ = [
    "COMMAND_VARIABLE",
    "FILE_VARIABLE",
    "NEW_COMMAND_VARIABLE",
    "NEW_FILE_VARIABLE",
    "PassphraseRequest",
    "PassphraseSource",
    "configured_source",
    "read_passphrase",
    "stdin_is_tty",
]

FILE_VARIABLE: Final = "STRONGROOM_PASSPHRASE_FILE"
COMMAND_VARIABLE: Final = "STRONGROOM_PASSPHRASE_COMMAND"
NEW_FILE_VARIABLE: Final = "STRONGROOM_NEW_PASSPHRASE_FILE"
NEW_COMMAND_VARIABLE: Final = "STRONGROOM_NEW_PASSPHRASE_COMMAND"

_NO_SOURCE = (
    f"no passphrase available: set {FILE_VARIABLE} or {COMMAND_VARIABLE}, "
    "or run on a terminal to be asked"
)
_NO_NEW_SOURCE = (
    f"no new passphrase available: set {NEW_FILE_VARIABLE} or {NEW_COMMAND_VARIABLE}, "
    "or run on a terminal to be asked; the passphrase was not changed"
)


#: What a passphrase source is asked for: the framework's :class:`SecretRequest`.
PassphraseRequest = SecretRequest

#: Returns the passphrase as text, bytes or a :class:`~strongroom.secret.Secret`, or
#: raises a :class:`~strongroom.errors.KeyUnavailableError` (the user cancelled).
PassphraseSource = SecretSource


def read_passphrase(request: PassphraseRequest) -> bytes:
    """The default source: the file variable, the command variable, else a TTY prompt.

    A change (``request.change``) reads the ``NEW_`` variables instead and
    prompts for a new passphrase; it never falls back to the current one.
    The variables are the process's own, whatever ``environ`` the config was
    parsed with: an application that wants none of them hands the secret over
    with ``Strongroom(secrets=...)``.

    :raises strongroom.errors.SecretSourceError: the variable names a file
        readable by others, or a command that failed.
    :raises strongroom.errors.UnlockFailedError: the two passphrases typed differ.
    :raises strongroom.errors.KeyLockedError: the variable names a file that
        does not exist, or no variable is set and standard input is not a
        terminal, or the prompt got end-of-file.
    """
    file_variable, command_variable = (
        (NEW_FILE_VARIABLE, NEW_COMMAND_VARIABLE)
        if request.change
        else (FILE_VARIABLE, COMMAND_VARIABLE)
    )
    for variable, scheme in ((file_variable, "file"), (command_variable, "command")):
        target = os.environ.get(variable, "").strip()
        if target:
            try:
                return SecretRef(scheme, target).resolve()
            except (SecretSourceError, KeyLockedError) as exc:
                raise type(exc)(f"{variable}: {exc}") from None
    if not stdin_is_tty():
        raise KeyLockedError(_NO_NEW_SOURCE if request.change else _NO_SOURCE)
    return _prompt(request).encode()


def configured_source(current: SecretRef | None, new: SecretRef | None) -> PassphraseSource:
    """The settings' references first (``new`` for a change), else :func:`read_passphrase`."""

    def source(request: PassphraseRequest) -> bytes:
        reference = new if request.change else current
        return reference.resolve() if reference is not None else read_passphrase(request)

    return source


def stdin_is_tty() -> bool:
    """Whether standard input is a terminal to prompt on (not closed, detached or redirected)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def _prompt(request: PassphraseRequest) -> str:
    import getpass  # only here: it loads termios, which no command without a terminal needs
    import hmac

    context = request.context
    where = f"{context.account!r} ({context.purpose})"
    kind = "New passphrase" if request.change else "Passphrase"
    try:
        first = getpass.getpass(f"{kind} for {where}: ")
        if request.new and first:
            again = getpass.getpass("Repeat the passphrase: ")
            if not hmac.compare_digest(first.encode(), again.encode()):
                raise UnlockFailedError("the two passphrases typed differ; nothing was wrapped")
    except EOFError:
        raise KeyLockedError(f"no passphrase was entered for {where}") from None
    return first
