"""The ``keyring`` key provider: a random key-encryption key kept in the OS keyring.

Needs the ``keyring`` extra (the ``keyring`` library, 25 or newer).  The
module is named ``os_keyring`` so that it never shadows that library.

For each account the OS keyring holds one random 256-bit key-encryption key
(KEK), base64-encoded, as the item ``(service, f"{account}:kek")``; the
service is the ``service`` setting (``"strongroom"`` by default).  ``wrap``
creates the item when it is missing; ``unwrap`` only reads it; ``destroy``
deletes it (and the generation item below), after which nothing this
provider wrapped for the account can be recovered through it
(crypto-shredding).  The wrapped secret itself never enters the keyring:
only the blob, which is worthless without the KEK, is returned.

Wrap blob, version 1::

    offset  size  field
         0     4  magic b"SRKR"
         4     1  format version, 0x01
         5    12  AES-256-GCM nonce
        17   n+16 AES-256-GCM ciphertext of the n-byte secret, then the tag

    AAD = bytes 0..16 (everything before the ciphertext) || context.encode()

A failed tag (an altered blob, another context, or a KEK replaced since the
wrap) raises the detail-free :class:`~strongroom.errors.AuthenticationError`.

**Rollback protection.**  Beside the KEK the keyring keeps the key record's
generation, the count of its writes, as a second item
``(service, f"{account}:generation")`` holding the number in decimal.
:meth:`~OsKeyringProvider.record_generation` only ever raises it (read,
compare, write, read back); the key hierarchy refuses a key record older
than it, such as a backup copied back over the data directory to revive
destroyed keys.  A separate item rather than a field of the KEK's: the KEK
item is written once and never rewritten, so keeping a counter can neither
corrupt nor replace a KEK, and blobs and KEKs keep the same format.  A value
that is not a decimal number raises :class:`~strongroom.errors.IntegrityError`
naming the item; deleting that item (``secret-tool clear service strongroom
username alice:generation``) gives up the protection until the next write.
The protection holds only while the keyring is not rolled back with the data:
a backup that holds the login keyring as well (GNOME's ``login.keyring``,
macOS's login keychain) restores both.  The passphrase provider keeps no
state and gives none.  Items are named by service and account only, so two
stacks that use the same account name on one machine must set different
``service`` values, or they share one KEK and one generation.

**Backend choice.**  The backend is ``keyring.get_keyring()`` (or one given
to the constructor), checked on every call: a backend whose ``priority`` is
below 1, or that raises when asked for it, is refused with
:class:`~strongroom.errors.ProviderUnreachableError` naming its class.  That
rules out ``keyrings.alt``'s plaintext and weakly encrypted files and
keyring's ``fail`` and ``null`` backends, which keyring picks silently when no
secret service is reachable; strongroom never falls back to them.  keyring's
``ChainerBackend`` is reduced to its highest-priority member for the same
reason: the chainer would write to the next backend when the first refuses.
keyring decides which backends are viable once per process, so a process
that started before the session's keyring service was reachable keeps
refusing until it is restarted.

**Errors.**  ``KeyringLocked`` becomes :class:`~strongroom.errors.KeyLockedError`;
``NoKeyringError``, ``InitError`` and connection failures become
:class:`~strongroom.errors.ProviderUnreachableError` ("no OS keyring service
is reachable"), as does any other error the backend raises.  The original is
chained as ``__cause__``; no message carries key material.

**Traits.**  The KEK is read into this process (exportable root) and the
login keyring is normally unlocked with the session, so no user presence is
needed per unwrap.  ``survives_reinstall`` is ``False``: a desktop login
keyring usually outlives uninstalling the application, but a device reset,
a new machine, a reset user profile, or an access list tied to the
application's signature (macOS) loses it, and the trait is a promise policy
relies on.  Pair this provider with a recovery provider (a passphrase) when
losing the device's keyring must not lose the data.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Final

import keyring
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend
from keyring.errors import InitError, KeyringLocked, NoKeyringError, PasswordDeleteError
from msgspec import Meta

from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    StrongroomError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom.settings import BackendSettings
from strongroom_plugins.providers._wrapping import (
    KEY_SIZE,
    check_length,
    check_magic,
    open_with_kek,
    seal_with_kek,
    wipe,
)

__all__ = ["KeyringSettings", "OsKeyringProvider", "generation_username", "kek_username"]

MAGIC: Final = b"SRKR"
VERSION: Final = 1
PREFIX_SIZE: Final = len(MAGIC) + 1
#: keyring's own advice: a priority of 1 or more is a recommended backend.
MIN_PRIORITY: Final = 1.0
#: A kept generation: a decimal number, ASCII digits only, at most 19 of them (fits u63).
_GENERATION = re.compile(r"[0-9]{1,19}")


class KeyringSettings(BackendSettings, frozen=True, kw_only=True):
    """Where in the OS keyring the key-encryption keys are kept."""

    service: Annotated[str, Meta(min_length=1, description="keyring service name")] = "strongroom"


def kek_username(account: str) -> str:
    """The keyring user name under which ``account``'s KEK is stored."""
    return f"{account}:kek"


def generation_username(account: str) -> str:
    """The keyring user name under which ``account``'s key-record generation is kept."""
    return f"{account}:generation"


def _describe(backend: KeyringBackend) -> str:
    kind = type(backend)
    return f"{kind.__module__}.{kind.__qualname__}"


class OsKeyringProvider(KeyProvider[KeyringSettings]):
    """Wraps under a random per-account KEK kept in the OS keyring, with the record's generation.

    :param settings: the keyring service name.
    :param backend: a keyring backend to use instead of ``keyring.get_keyring()``;
        it is held to the same priority rule.
    """

    Settings = KeyringSettings
    traits = KeyProviderTraits(
        non_exportable_root=False, needs_user_presence=False, survives_reinstall=False
    )

    def __init__(
        self, settings: KeyringSettings | None = None, *, backend: KeyringBackend | None = None
    ) -> None:
        super().__init__(settings)
        self._params = self.settings
        self._backend_override = backend

    @property
    def service(self) -> str:
        return self._params.service

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Seal ``secret`` under the account's KEK, creating the KEK when missing.

        :raises strongroom.errors.KeyLockedError: the OS keyring is locked.
        :raises strongroom.errors.ProviderUnreachableError: no acceptable keyring
            backend or service is reachable.
        :raises strongroom.errors.IntegrityError: the keyring item holds no valid KEK.
        """
        kek = self._kek(context.account, create=True)
        try:
            return seal_with_kek(kek, MAGIC + bytes([VERSION]), secret, context)
        finally:
            wipe(kek)

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Open ``blob`` with the account's KEK from the OS keyring.

        :raises strongroom.errors.IntegrityError: ``blob`` is not a keyring wrap
            of a version this code reads, or the keyring item holds no valid KEK.
        :raises strongroom.errors.AuthenticationError: ``blob`` was altered, was
            wrapped under another context, or the KEK has been replaced.
        :raises strongroom.errors.KeyUnavailableError: the keyring holds no KEK
            for the account (destroyed, or never made here).
        :raises strongroom.errors.KeyLockedError: the OS keyring is locked.
        :raises strongroom.errors.ProviderUnreachableError: no acceptable keyring
            backend or service is reachable.
        """
        check_magic(blob, MAGIC, VERSION, "keyring-wrapped key")
        check_length(blob, PREFIX_SIZE)
        kek = self._kek(context.account, create=False)
        try:
            return open_with_kek(kek, blob, PREFIX_SIZE, context)
        finally:
            wipe(kek)

    def destroy(self, account: str) -> None:
        """Delete the account's KEK, then its generation; nothing happens for an absent item.

        :raises strongroom.errors.KeyLockedError: the OS keyring is locked.
        :raises strongroom.errors.ProviderUnreachableError: no acceptable keyring
            backend or service is reachable, or it refused the deletion.
        """
        backend = self._backend()
        with _translated(backend):
            # The KEK first: once it is gone, the account is shredded whatever follows.
            for username in (kek_username(account), generation_username(account)):
                try:
                    backend.delete_password(self.service, username)
                except PasswordDeleteError:
                    # keyring reports a missing item this way; anything else is a failure.
                    if backend.get_password(self.service, username) is not None:
                        raise

    def record_generation(self, account: str, generation: int) -> None:
        """Raise the generation kept for ``account`` to ``generation``; never lower it.

        :raises strongroom.errors.KeyLockedError: the OS keyring is locked.
        :raises strongroom.errors.ProviderUnreachableError: no acceptable keyring
            backend or service is reachable, or it did not keep the value.
        :raises strongroom.errors.IntegrityError: the kept value is malformed; it
            is left as it is.
        """
        if generation < 0:
            raise ValueError("a key-record generation is not negative")
        backend = self._backend()
        username = generation_username(account)
        with _translated(backend):
            kept = self._generation(backend, account, backend.get_password(self.service, username))
            if kept is not None and kept >= generation:
                return
            backend.set_password(self.service, username, str(generation))
            kept = self._generation(backend, account, backend.get_password(self.service, username))
        if kept is None or kept < generation:
            raise ProviderUnreachableError(
                f"{self._where(backend)} did not keep the key-record generation for {account!r}"
            )

    def recorded_generation(self, account: str) -> int | None:
        """The generation kept for ``account``, or ``None`` when the keyring holds none.

        :raises strongroom.errors.KeyLockedError: the OS keyring is locked.
        :raises strongroom.errors.ProviderUnreachableError: no acceptable keyring
            backend or service is reachable.
        :raises strongroom.errors.IntegrityError: the kept value is malformed.
        """
        backend = self._backend()
        with _translated(backend):
            stored = backend.get_password(self.service, generation_username(account))
        return self._generation(backend, account, stored)

    def _generation(self, backend: KeyringBackend, account: str, stored: str | None) -> int | None:
        """Parse a kept value: anything but ASCII digits is refused, never guessed at."""
        if stored is None:
            return None
        if _GENERATION.fullmatch(stored) is None:
            raise IntegrityError(
                f"{self._where(backend)}: the item {generation_username(account)!r} does not "
                "hold a key-record generation (a decimal number)"
            )
        return int(stored)

    def _where(self, backend: KeyringBackend) -> str:
        return f"the OS keyring ({_describe(backend)}), service {self.service!r}"

    def _kek(self, account: str, *, create: bool) -> bytearray:
        backend = self._backend()
        username = kek_username(account)
        with _translated(backend):
            stored = backend.get_password(self.service, username)
            if stored is None and create:
                fresh = bytearray(os.urandom(KEY_SIZE))
                encoded = base64.b64encode(fresh).decode("ascii")
                wipe(fresh)
                backend.set_password(self.service, username, encoded)
                # Read back: if another process created the item meanwhile, use its KEK.
                stored = backend.get_password(self.service, username)
        where = self._where(backend)
        if stored is None:
            if create:
                raise ProviderUnreachableError(f"{where} did not keep the new KEK for {account!r}")
            raise ProviderKeyLostError(
                f"{where} holds no key-encryption key for {account!r}: it was destroyed or "
                "never made here, so this wrap cannot be recovered through this provider"
            )
        try:
            kek = bytearray(base64.b64decode(stored, validate=True))
        except (binascii.Error, ValueError):
            kek = bytearray()
        if len(kek) != KEY_SIZE:
            wipe(kek)
            raise IntegrityError(
                f"{where}: the item for {account!r} does not hold a {KEY_SIZE}-byte base64 key"
            )
        return kek

    def _backend(self) -> KeyringBackend:
        """The keyring backend to use now, refusing any that is not recommended.

        :raises strongroom.errors.ProviderUnreachableError: it is below priority 1
            or unusable here.
        """
        if self._backend_override is not None:
            backend = self._backend_override
        else:
            try:
                backend = keyring.get_keyring()
            except Exception as exc:  # choosing asks each backend's priority, which may raise
                raise ProviderUnreachableError(
                    f"no OS keyring service is reachable: keyring could not choose a backend "
                    f"({type(exc).__name__})"
                ) from exc
        if isinstance(backend, ChainerBackend):
            members: list[KeyringBackend] = list(ChainerBackend.backends)
            if not members:
                raise ProviderUnreachableError(
                    f"no OS keyring service is reachable: {_describe(backend)} has no backends"
                )
            backend = members[0]  # sorted by priority; never fall through to the others
        try:
            priority = float(backend.priority)
        except Exception as exc:  # a keyring backend says "unusable here" by raising
            raise ProviderUnreachableError(
                f"no OS keyring service is reachable: {_describe(backend)} is unusable here "
                f"({type(exc).__name__})"
            ) from exc
        if priority < MIN_PRIORITY:
            raise ProviderUnreachableError(
                f"no OS keyring service is reachable: refusing {_describe(backend)} "
                f"(priority {priority:g}; strongroom needs {MIN_PRIORITY:g} or more, so never "
                "a plaintext or fail-safe keyring)"
            )
        return backend

    def __repr__(self) -> str:
        return f"<OsKeyringProvider service={self.service!r}>"


@contextmanager
def _translated(backend: KeyringBackend) -> Iterator[None]:
    """Translate what a keyring backend raises into strongroom's error tree."""
    name = _describe(backend)
    try:
        yield
    except KeyringLocked as exc:
        raise KeyLockedError(f"the OS keyring ({name}) is locked; unlock it and retry") from exc
    except (NoKeyringError, InitError, OSError) as exc:
        raise ProviderUnreachableError(
            f"no OS keyring service is reachable ({name}: {type(exc).__name__})"
        ) from exc
    except StrongroomError:
        raise
    except Exception as exc:  # other KeyringError, and D-Bus errors from the backend's libraries
        raise ProviderUnreachableError(
            f"the OS keyring ({name}) failed: {type(exc).__name__}"
        ) from exc
