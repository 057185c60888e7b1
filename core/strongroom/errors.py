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
    │   ├── AuthenticationError                     an AEAD tag or signature did not verify
    │   └── RequestVerificationError                a server's verifier refused a signed request
    ├── KeyUnavailableError                 exit 4  a key or its provider cannot be reached
    │   ├── KeyLockedError                          locked keystore or session
    │   ├── ProviderUnreachableError                service absent or not answering
    │   ├── ProviderKeyLostError                    its root for the account is gone
    │   └── UnlockFailedError                       wrong passphrase, PIN or token
    ├── StoreError                          exit 1  a store could not complete an operation
    │   └── RecordNotFoundError                     no record under that key
    ├── NonceCacheUnavailableError          exit 1  a nonce cache cannot answer: requests refused
    │   └── IdempotencyUnavailableError             ... nor keep or read idempotent outcomes
    ├── ServerStorageError                  exit 1  the sync server's storage refused an operation
    │   ├── ServerStorageUnavailableError           its database cannot be reached (answer 503)
    │   ├── ServerObjectNotFoundError               no such object or upload for this account
    │   └── UploadIncompleteError                   a blob committed before all its chunks
    └── TransportError                      exit 1  a sync request could not be completed
        ├── PinMismatchError                exit 3  the server's key is not pinned
        └── RequestRefusedError                     the server refused the request's signature
            └── ClockSkewError                      ... its timestamp: the device clock is off

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
    "ClockSkewError",
    "ConfigError",
    "IdempotencyUnavailableError",
    "IntegrityError",
    "KeyLockedError",
    "KeyUnavailableError",
    "NonceCacheUnavailableError",
    "PinMismatchError",
    "PluginError",
    "PluginLoadError",
    "ProviderKeyLostError",
    "ProviderUnreachableError",
    "RecordNotFoundError",
    "RequestRefusedError",
    "RequestVerificationError",
    "SecretSourceError",
    "ServerObjectNotFoundError",
    "ServerStorageError",
    "ServerStorageUnavailableError",
    "StoreError",
    "StrongroomError",
    "TransportError",
    "UnlockFailedError",
    "UploadIncompleteError",
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


class RequestVerificationError(IntegrityError):
    """A server's request verifier refused a request (``strongroom.signing.verifier``).

    ``status`` is the HTTP status to answer with (400 malformed, 401 not
    authentic, stale or replayed, 503 the nonce cache cannot answer);
    ``reason`` the short code sent to the client (``malformed``,
    ``signature``, ``timestamp``, ``replay``, ``unavailable``): a wrong
    signature, an unknown and a retired key id all read ``signature``.  The
    message, for the server's own log, may say more.  ``server_time`` is
    the verifier's clock when it refused, in Unix seconds.
    """

    def __init__(self, message: str, *, status: int, reason: str, server_time: int) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.server_time = server_time


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


class NonceCacheUnavailableError(StrongroomError):
    """A nonce cache cannot say whether a nonce is new (unreachable, or full).

    The verifier then refuses the request (503): it never accepts unchecked.
    """


class IdempotencyUnavailableError(NonceCacheUnavailableError):
    """The idempotency store (``strongroom.idempotency``) cannot answer, or is full.

    The request is refused (503) and never run unchecked.  It shares the
    nonce cache's backend, so catching :class:`NonceCacheUnavailableError`
    catches both.
    """


class ServerStorageError(StrongroomError):
    """The sync server's storage (``strongroom.server_storage``) refused an operation.

    Messages name the account or key at most, never a device key, a
    password or stored bytes.
    """


class ServerStorageUnavailableError(ServerStorageError):
    """The server storage's database cannot be reached; the server answers 503.

    A write that raised this was not acknowledged: try it again.
    """


class ServerObjectNotFoundError(ServerStorageError, KeyError):
    """No such key, blob, chunk, device or open upload for this account.

    Another account's object reads exactly like one that does not exist.
    """

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "not found"


class UploadIncompleteError(ServerStorageError):
    """A blob upload was committed while some of its chunks are still missing."""


class TransportError(StrongroomError):
    """A sync request could not be completed."""


class PinMismatchError(TransportError):
    """The server presented a key that matches no configured pin."""

    exit_code = 3


class RequestRefusedError(TransportError):
    """The server's verifier refused the request's signature (HTTP ``status``).

    ``reason`` is the verifier's code (``signature``, ``timestamp``,
    ``replay``, ``malformed``), or ``""`` when the refusal was not signed and
    so cannot be trusted to say why.
    """

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ClockSkewError(RequestRefusedError):
    """The server refused the request's timestamp, in a rejection signed with its time.

    The signer has already corrected its clock offset from ``server_time``;
    :meth:`strongroom.Strongroom.send` retries once.
    """

    def __init__(self, message: str, *, status: int, server_time: int) -> None:
        super().__init__(message, status=status, reason="timestamp")
        self.server_time = server_time
