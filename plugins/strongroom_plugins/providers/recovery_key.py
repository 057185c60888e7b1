"""The ``recovery-key`` provider: a printable key, shown once, that reopens a lost account.

A keyring item deleted, a Vault key gone, a token lost: an account wrapped
only by those is lost with them.  This provider wraps the master key a
second time, to a key the user writes down when it is made
(``_recovery_code``: 160 bits, a checksum, ten groups of four).  It is
*recovery only* (:attr:`~strongroom.key_provider.KeyProviderTraits.recovery_only`):
unlocking never asks for it in turn, only ``strongroom recover --with NAME``
(or :meth:`~strongroom.keys.AccountKeys.unlock` naming it) does, and
re-enrols the lost provider with a new root.

**Public-key wrap.**  The printable seed derives an X25519 key pair; a wrap
is sealed to its public key with a fresh ephemeral key pair, so wrapping
again needs no secret.  A master-key rotation (:meth:`renew`) therefore
re-wraps to the same recovery key without asking for it: the paper copy
keeps working.  Its public key comes from the previous wrap, which the key
record's MAC authenticated at unlock.  A new recovery key is made when the
provider is first added (``strongroom init``, ``providers add``) and on
``strongroom keys rotate --provider NAME``, and is shown once: on the
terminal, or written to the ``write_new_key_to`` file (created, never
replaced: an existing file may hold the recovery key still in use), or to
a ``show`` callback an application passes.

Wrap blob, version 1::

    offset  size  field
         0     4  magic b"SRRK"
         4     1  format version, 0x01
         5    32  the recovery key's X25519 public key
        37    32  an ephemeral X25519 public key, fresh per wrap
        69    12  AES-256-GCM nonce
        81  n+16  AES-256-GCM ciphertext of the n-byte secret, then the tag

    recovery private key = HKDF-SHA256(seed, salt = none,
                                       info = b"strongroom/v1/recovery-key-x25519", 32)
    KEK = HKDF-SHA256(X25519(ephemeral, recovery public key), salt = none,
                      info = b"strongroom/v1/recovery-key-kek"
                             || ephemeral public || recovery public)
    AAD = bytes 0..80 || context.encode()

Where the typed recovery key comes from: the ``recovery_key`` setting (a
secret reference), an application's source (:meth:`use_secret`), else a
prompt on the terminal.  A key for another account is refused before any
decryption (its public key differs), as a typo is by the checksum.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Final

from msgspec import Meta

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, SecretRequest, WrapContext
from strongroom.secret import Secret
from strongroom.settings import BackendSettings, SecretRef
from strongroom_plugins.providers import _recovery_code
from strongroom_plugins.providers._passphrase_sources import stdin_is_tty
from strongroom_plugins.providers._wrapping import (
    KEY_SIZE,
    check_length,
    check_magic,
    open_with_kek,
    seal_with_kek,
    wipe,
)

if TYPE_CHECKING:  # imported where used, off the cold path
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = ["RecoveryKeyProvider", "RecoveryKeySettings", "ShowRecoveryKey"]

MAGIC: Final = b"SRRK"
VERSION: Final = 1
_PUBLIC = 32
PREFIX_SIZE: Final = len(MAGIC) + 1 + 2 * _PUBLIC  # 69 bytes, before the nonce
_KEY_INFO = b"strongroom/v1/recovery-key-x25519"
log = logging.getLogger(__name__)
_KEK_INFO = b"strongroom/v1/recovery-key-kek"

#: Shows a new recovery key (its printable text) to the user, once, for the wrap ``context``.
ShowRecoveryKey = Callable[[str, WrapContext], None]


class RecoveryKeySettings(BackendSettings, frozen=True, kw_only=True):
    """Where a typed recovery key comes from, and where a new one is shown."""

    recovery_key: Annotated[
        SecretRef | None,
        Meta(description="the typed recovery key (env:, file:, command:); default: a prompt"),
    ] = None
    write_new_key_to: Annotated[
        str | None,
        Meta(
            description="write a new recovery key to this file (created 0600, never replaced) "
            "instead of showing it on the terminal"
        ),
    ] = None


class RecoveryKeyProvider(KeyProvider[RecoveryKeySettings]):
    """Wraps to a printable recovery key; used only to recover an account.

    :param show: shows a new recovery key to the user (an application's own
        screen); by default the terminal, or the ``write_new_key_to`` file.
    """

    Settings = RecoveryKeySettings
    #: The seed is on paper, typed back by the user; it outlives any device.
    traits = KeyProviderTraits(
        non_exportable_root=False,
        needs_user_presence=True,
        survives_reinstall=True,
        recovery_only=True,
    )

    def __init__(
        self, settings: RecoveryKeySettings | None = None, *, show: ShowRecoveryKey | None = None
    ) -> None:
        super().__init__(settings)
        self._custom_show = show is not None
        self._show = show if show is not None else self._show_default
        self._source: Callable[[SecretRequest], str | bytes | Secret] | None = None
        #: By account: the printable key of the newest wrap, until its record is saved.
        self._pending: dict[str, tuple[str, WrapContext]] = {}

    def use_secret(self, source: Callable[[SecretRequest], str | bytes | Secret]) -> None:
        """Ask ``source`` (the application's own prompt) for the recovery key from now on."""
        self._source = source

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Make a new recovery key and wrap ``secret`` to it; the key is shown once saved.

        The key is shown by :meth:`saved`, once the key record holding this
        wrap is written: a wrap whose write fails (or is retried) never
        shows a key nobody can use.  Where it will be shown is checked here.

        :raises strongroom.errors.KeyUnavailableError: there is nowhere to show
            the new key (no terminal and no ``write_new_key_to``), or that file exists.
        """
        self._check_can_show()
        seed = _recovery_code.new_seed()
        try:
            private = _private_key(seed)
            blob = _seal_to(_public_bytes(private.public_key()), secret, context)
            self._pending[context.account] = (_recovery_code.printable(seed), context)
        finally:
            wipe(seed)
        return blob

    def saved(self, account: str) -> None:
        """The record holds the newest wrap: show its recovery key now, once."""
        pending = self._pending.pop(account, None)
        if pending is not None:
            self._show(*pending)

    def forget_secrets(self) -> None:
        """Drop a recovery key made for a wrap whose record was never written."""
        self._pending.clear()

    def close(self) -> None:
        self.forget_secrets()

    def renew(
        self, secret: bytes, context: WrapContext, *, previous: bytes, previous_context: WrapContext
    ) -> bytes:
        """Wrap ``secret`` to the recovery key that ``previous`` was wrapped to; nothing asked.

        The key record's MAC authenticated ``previous`` when the account was
        unlocked, so its public key is the one the user holds on paper.

        :raises strongroom.errors.IntegrityError: ``previous`` is not a recovery-key wrap.
        """
        _check_blob(previous)
        return _seal_to(previous[5 : 5 + _PUBLIC], secret, context)

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Ask for the recovery key and open ``blob`` with it.

        :raises strongroom.errors.IntegrityError: ``blob`` is not a recovery-key wrap.
        :raises strongroom.errors.UnlockFailedError: the key typed has a typo, or
            belongs to another account or an older recovery key, or the blob
            was altered or is bound to another context.
        :raises strongroom.errors.KeyLockedError: no recovery key could be asked for.
        """
        _check_blob(blob)  # before anyone is asked
        seed = _recovery_code.parse(self._ask(context))
        try:
            private = _private_key(seed)
        finally:
            wipe(seed)
        if _public_bytes(private.public_key()) != blob[5 : 5 + _PUBLIC]:
            raise UnlockFailedError(
                f"that recovery key is not the one that wraps account {context.account!r} "
                "(another account's, or one replaced since)"
            )
        try:  # a low-order ephemeral key gives no shared secret: an altered blob
            shared = private.exchange(_x25519_public(blob[5 + _PUBLIC : PREFIX_SIZE]))
        except ValueError:
            raise IntegrityError("the recovery-key wrap holds an unusable public key") from None
        kek = _kek(shared, blob)
        try:
            return open_with_kek(kek, blob, PREFIX_SIZE, context)
        except AuthenticationError:  # as a passphrase's: the blob and its context come as one
            raise UnlockFailedError(
                f"the recovery key does not open the wrap of {context.account!r}: it was altered"
            ) from None
        finally:
            wipe(kek)

    def _ask(self, context: WrapContext) -> str | bytes:
        if self._source is not None:
            answer = self._source(SecretRequest(context, new=False))
            return bytes(answer.view()) if isinstance(answer, Secret) else answer
        if self.settings.recovery_key is not None:
            return self.settings.recovery_key.resolve()
        if not stdin_is_tty():
            raise KeyLockedError(
                "no recovery key available: set recovery_key in the provider's config "
                "(env:, file: or command:), or run on a terminal to be asked"
            )
        try:
            return getpass.getpass(f"Recovery key for {context.account!r}: ")
        except EOFError:
            raise KeyLockedError("no recovery key was entered") from None

    def _check_can_show(self) -> None:
        """:raises KeyUnavailableError: the default display has nowhere to show a new key."""
        if self._custom_show:
            return
        target = self.settings.write_new_key_to
        if target is not None:
            if os.path.lexists(target):
                raise KeyUnavailableError(
                    f"{target} exists: it may hold the recovery key in use; move it away "
                    "first. Nothing was changed"
                )
            return
        try:
            with open("/dev/tty", "w", encoding="utf-8"):
                pass
        except OSError:
            raise KeyUnavailableError(
                "no terminal to show the new recovery key on: set write_new_key_to in the "
                "provider's config; nothing was changed"
            ) from None

    def _show_default(self, text: str, context: WrapContext) -> None:
        banner = (
            f"Recovery key for account {context.account!r} (shown once; write it down and "
            f"keep it apart from this device):\n\n    {text}\n\n"
        )
        target = self.settings.write_new_key_to
        try:
            if target is not None:
                _write_new_file(target, text + "\n")
            else:
                with open("/dev/tty", "w", encoding="utf-8") as terminal:
                    terminal.write(banner)
        except (OSError, KeyUnavailableError) as exc:  # the record already holds the wrap
            log.error(
                "the new recovery key for %r could not be shown (%s); it is in effect but "
                "unknown: make another with 'strongroom keys rotate --provider NAME'",
                context.account,
                exc.strerror if isinstance(exc, OSError) else exc,
            )

    def __repr__(self) -> str:
        return "<RecoveryKeyProvider x25519>"


def _write_new_file(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise KeyUnavailableError(
            f"{path} exists: it may hold the recovery key in use; move it away first. "
            "Nothing was changed"
        ) from None
    except OSError as exc:
        raise KeyUnavailableError(
            f"cannot create {path} for the new recovery key: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _check_blob(blob: bytes) -> None:
    check_magic(blob, MAGIC, VERSION, "recovery-key wrap")
    check_length(blob, PREFIX_SIZE)


def _private_key(seed: bytearray) -> X25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    scalar = bytearray(_hkdf(bytes(seed), _KEY_INFO))
    try:
        return X25519PrivateKey.from_private_bytes(bytes(scalar))
    finally:
        wipe(scalar)


def _seal_to(
    recipient: bytes,
    secret: bytes,
    context: WrapContext,
    *,
    ephemeral: X25519PrivateKey | None = None,  # fixed only by known-answer tests
) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    ephemeral = ephemeral if ephemeral is not None else X25519PrivateKey.generate()
    prefix = MAGIC + bytes([VERSION]) + recipient + _public_bytes(ephemeral.public_key())
    kek = _kek(ephemeral.exchange(_x25519_public(recipient)), prefix)
    try:
        return seal_with_kek(kek, prefix, secret, context)
    finally:
        wipe(kek)


def _kek(shared: bytes, prefix: bytes) -> bytearray:
    """The KEK from a shared secret, bound to both public keys in ``prefix``."""
    ephemeral, recipient = prefix[5 + _PUBLIC : PREFIX_SIZE], prefix[5 : 5 + _PUBLIC]
    return bytearray(_hkdf(shared, _KEK_INFO + ephemeral + recipient))


def _hkdf(material: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(material)


def _x25519_public(raw: bytes) -> X25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise IntegrityError("the recovery-key wrap holds a malformed public key") from None


def _public_bytes(key: X25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
