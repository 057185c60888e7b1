"""Every error strongroom raises, in one tree.

::

    StrongroomError                         exit 1 unless a subclass says otherwise
    ├── UsageError                          exit 2  a command or call was malformed
    ├── ConfigError                         exit 2  the config file or an override is wrong
    ├── PluginError                         exit 2  a backend or hook plugin cannot be used
    │   ├── BackendNotFoundError                    no backend of that name in the slot's group
    │   ├── BackendBlockedError                     the config blocks the plugin providing it
    │   ├── BackendUnavailableError                 its extra is not installed
    │   └── PluginLoadError                         it raised while being imported
    ├── SecretSourceError                   exit 2  a secret reference cannot be resolved
    ├── IntegrityError                      exit 3  data failed verification
    │   └── AuthenticationError                     an AEAD tag or signature did not verify
    ├── KeyUnavailableError                 exit 4  a key or its provider cannot be reached
    │   ├── KeyLockedError                          locked keystore or session
    │   ├── ProviderUnreachableError                service absent or not answering
    │   ├── ProviderKeyLostError                    its root for the account is gone
    │   └── UnlockFailedError                       wrong passphrase, PIN or token
    ├── StoreError                          exit 1  a store could not complete an operation
    │   └── RecordNotFoundError                     no record under that key
    └── TransportError                      exit 1  a sync request could not be completed
        └── PinMismatchError                exit 3  the server's key is not pinned

Authentication failures carry no detail: the same message whether the key
was wrong or the data was altered, so callers cannot be turned into an
oracle.  Errors raised by a backend library are translated into this tree
where they cross into strongroom; the original is chained as ``__cause__``
for debugging but never shown by the CLI.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CLI's --help depends on it
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "BackendBlockedError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "ConfigError",
    "IntegrityError",
    "KeyLockedError",
    "KeyUnavailableError",
    "PinMismatchError",
    "PluginError",
    "PluginLoadError",
    "ProviderKeyLostError",
    "ProviderUnreachableError",
    "RecordNotFoundError",
    "SecretSourceError",
    "StoreError",
    "StrongroomError",
    "TransportError",
    "UnlockFailedError",
    "UsageError",
]


class StrongroomError(Exception):
    """Base of every error strongroom raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it;
    the values are documented in ``docs/cli.md``.
    """

    exit_code: ClassVar[int] = 1


class UsageError(StrongroomError):
    """A command or API call was given arguments it cannot accept."""

    exit_code = 2


class ConfigError(StrongroomError):
    """The configuration is malformed or does not validate.

    The message names where: the file (or environment variable), the table
    and the key, and what was expected there.
    """

    exit_code = 2

    def __init__(
        self, message: str, *, source: str | None = None, location: str | None = None
    ) -> None:
        where = ": ".join(part for part in (source, location) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.location = location


class PluginError(StrongroomError):
    """A backend or hook plugin cannot be used."""

    exit_code = 2


class BackendNotFoundError(PluginError):
    """No backend of the requested name is registered in the slot's group."""


class BackendBlockedError(PluginError):
    """The backend comes from a plugin the configuration blocks."""


class BackendUnavailableError(PluginError):
    """The backend is registered but needs an extra that is not installed."""


class PluginLoadError(PluginError):
    """A plugin raised while being imported; it is reported, never skipped."""

    exit_code = 1


class SecretSourceError(StrongroomError):
    """A secret reference (env, file, command) could not be resolved.

    The message names the reference, never the secret.
    """

    exit_code = 2


class IntegrityError(StrongroomError):
    """Data failed verification; nothing derived from it was released."""

    exit_code = 3


class AuthenticationError(IntegrityError):
    """An authentication tag or signature did not verify.

    Deliberately detail-free: a wrong key and tampered data look the same.
    """

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


class KeyUnavailableError(StrongroomError):
    """A key, or the provider that holds it, cannot be reached right now."""

    exit_code = 4


class KeyLockedError(KeyUnavailableError):
    """The keystore or session is locked."""


class ProviderUnreachableError(KeyUnavailableError):
    """The provider's service is absent or does not answer."""


class ProviderKeyLostError(KeyUnavailableError):
    """The provider answers, but its root for this account is gone or unusable.

    A deleted keyring item, a Vault key rotated past or deleted, a removed
    token: unlike a wrong passphrase, trying again will not help.  The
    account opens through another provider, or its recovery key
    (``strongroom recover``).
    """


class UnlockFailedError(KeyUnavailableError):
    """The passphrase, PIN or token offered to unlock a key was refused."""


class StoreError(StrongroomError):
    """A store could not complete an operation."""


class RecordNotFoundError(StoreError, KeyError):
    """No record exists under the requested key."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "record not found"


class TransportError(StrongroomError):
    """A sync request could not be completed."""


class PinMismatchError(TransportError):
    """The server presented a key that matches no configured pin."""

    exit_code = 3
