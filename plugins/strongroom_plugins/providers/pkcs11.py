"""The ``pkcs11`` key provider: an AES-256 key that never leaves an HSM, smart card or TPM token.

Needs the ``pkcs11`` extra (python-pkcs11).  For each account the token
holds a root key, an AES-256 secret key generated *inside* the token with
``CKA_SENSITIVE`` and without ``CKA_EXTRACTABLE``: neither its value nor a
wrap of it can be read out, by anyone, this process included.  ``wrap``
finds it (token label, then key label and ``CKA_ID``) or generates it when
the account has none; ``unwrap`` only finds it.  The master key is sealed
by AES-256-GCM computed inside the token, with the blob's header and the
wrap context as associated data (the format is in
:mod:`strongroom_plugins.providers._pkcs11_blob`); why GCM rather than
RFC 5649 key wrap is in ``docs/architecture.md``.

Settings: ``library`` (the PKCS#11 module, an absolute path; no default,
because a default module such as SoftHSM's would quietly swap a hardware
root for a software one), ``token_label``, ``key_label`` (a template in
which ``{account}`` becomes the account, default ``strongroom:{account}``),
``pin`` (a ``file:``, ``env:`` or ``command:`` reference; without one, a
prompt on a terminal) and ``mechanism`` (``aes-256-gcm``, the only one).

**Login.**  The token stays logged in from the first call until the
account's session locks or the provider closes (``forget_secrets``,
``close``), so an unlock asks for the PIN once; the PIN itself is not kept.
Login state is per process and token (see ``_pkcs11_token``): a second
provider on the same token in the same process shares it.

**Rotation** (``strongroom keys rotate --provider NAME``): :meth:`rewrap`
generates a new root key, the next serial under the same label, and wraps
the master key with it.  The old key cannot be deleted then, because the
key record holding the new wrap is not written yet; it is deleted the first
time the new key opens a wrap (a wrap under serial *n* only exists once a
record holding it was written), so keys older than the one in use are
shredded and an old backup of the key record no longer opens through the
token.

**Rollback.**  Beside the key, the token keeps the key record's generation
as private data objects (``CKO_DATA``, the account's key label,
``CKA_APPLICATION`` "strongroom key-record generation", the number in
decimal).  A new value is written as a new object before the lower ones are
destroyed (SoftHSM refuses to modify a data object's value), so a crash
leaves the higher value; the highest kept value counts.

**Errors**, each one line and exit 4 unless said: no library at the path,
or one that does not load, or a token that fails mid-call, is
:class:`~strongroom.errors.ProviderUnreachableError`; no token with the
label (removed, or the library looks at another token store) and no key
under the account's label are :class:`~strongroom.errors.ProviderKeyLostError`;
all name the root as unusable and the way back (another provider,
``strongroom recover``).  A refused PIN is :class:`~strongroom.errors.UnlockFailedError`;
a locked or expired PIN :class:`~strongroom.errors.KeyLockedError`.  A blob
that names a key the token does not hold (another token, a rotated-away or
replaced key) or fails its tag is the detail-free
:class:`~strongroom.errors.AuthenticationError` (exit 3 when no provider
unlocks); a blob of another format is :class:`~strongroom.errors.IntegrityError`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Annotated, Final, Literal

import pkcs11
from msgspec import Meta
from pkcs11 import Attribute, ObjectClass

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    UnlockFailedError,
)
from strongroom.key_provider import (
    KeyProvider,
    KeyProviderTraits,
    SecretRequest,
    SecretSource,
    WrapContext,
)
from strongroom.secret import Secret
from strongroom.settings import BackendSettings, SecretRef
from strongroom_plugins.providers import _pkcs11_blob as blob_format
from strongroom_plugins.providers._pkcs11_pin import pin_source
from strongroom_plugins.providers._pkcs11_token import (
    GENERATION_APPLICATION,
    TOKEN_LOCK,
    TokenLogin,
    check_root,
    generate_root,
    open_sealed,
    seal,
    translated,
)

__all__ = ["RECOVERY", "Pkcs11Provider", "Pkcs11Settings"]

log = logging.getLogger(__name__)

ACCOUNT: Final = "{account}"
#: The way back when the token's root cannot be used to unlock: said in every such error.
RECOVERY: Final = (
    "the account stays unlockable through its other providers, or run 'strongroom recover'"
)
_GENERATION = re.compile(rb"[0-9]{1,19}")


class Pkcs11Settings(BackendSettings, frozen=True, kw_only=True):
    """Which module, token and key; where the PIN comes from."""

    library: Annotated[
        str, Meta(min_length=2, pattern=r"^/", description="absolute path of the PKCS#11 module")
    ]
    token_label: Annotated[
        str, Meta(min_length=1, max_length=32, description="CKA_LABEL of the token")
    ]
    key_label: Annotated[
        str,
        Meta(
            min_length=len(ACCOUNT),
            description="label of the account's root key; {account} is replaced by the account",
        ),
    ] = "strongroom:{account}"
    pin: Annotated[
        SecretRef | None,
        Meta(description="where the user PIN comes from (file:, env:, command:); else a prompt"),
    ] = None
    mechanism: Annotated[
        Literal["aes-256-gcm"], Meta(description="how the token seals the master key")
    ] = "aes-256-gcm"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.key_label.count(ACCOUNT) != 1:
            raise ValueError("key_label must contain {account} once: each account has its own key")


class Pkcs11Provider(KeyProvider[Pkcs11Settings]):
    """Wraps under a per-account AES-256 key generated inside a PKCS#11 token.

    :param settings: the module, token, key label and PIN source.
    :param pin: the application's own PIN source, instead of the ``pin`` setting.
    """

    Settings = Pkcs11Settings
    #: The root never leaves the token; the PIN is the user's; the token (a
    #: card, an HSM) outlives any reinstall of the application.
    traits = KeyProviderTraits(
        non_exportable_root=True, needs_user_presence=True, survives_reinstall=True
    )

    def __init__(self, settings: Pkcs11Settings, *, pin: SecretSource | None = None) -> None:
        super().__init__(settings)
        self._params = settings
        self._custom_source = pin is not None
        self._source = pin if pin is not None else pin_source(settings.pin, settings.token_label)
        self._login = TokenLogin(settings.library, settings.token_label)

    # the interface

    def use_secret(self, source: SecretSource) -> None:
        """Ask ``source`` (the application's own prompt) for the PIN from now on."""
        self._source = source
        self._custom_source = True

    def forget_secrets(self) -> None:
        """Let go of the token's login, so that the next use asks for the PIN."""
        self._login.release()

    def close(self) -> None:
        self._login.release()

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Seal ``secret`` under the account's newest root key, generating one if it has none.

        :raises strongroom.errors.ProviderUnreachableError: the library is absent.
        :raises strongroom.errors.ProviderKeyLostError: the token is absent.
        :raises strongroom.errors.UnlockFailedError: the token refused the PIN.
        :raises strongroom.errors.KeyLockedError: the PIN is locked, or none is available.
        :raises strongroom.errors.KeyUnavailableError: the account's key is unfit.
        """
        return self._seal(secret, context, new_key=False)

    def rewrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Seal ``secret`` under a *new* root key: rotate the account's key on the token.

        The older keys are deleted when the new one first opens a wrap.

        :raises strongroom.errors.KeyUnavailableError: as :meth:`wrap`.
        """
        return self._seal(secret, context, new_key=True)

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Open ``blob`` with the root key it names, inside the token.

        :raises strongroom.errors.IntegrityError: ``blob`` is not of this format.
        :raises strongroom.errors.AuthenticationError: ``blob`` was altered, was
            wrapped under another context, or names a key this token does not hold.
        :raises strongroom.errors.ProviderKeyLostError: the token is absent, or holds
            no key for the account (deleted, or never made there).
        :raises strongroom.errors.KeyUnavailableError: the account's key is unfit.
        :raises strongroom.errors.ProviderUnreachableError: the library is absent.
        :raises strongroom.errors.UnlockFailedError: the token refused the PIN.
        :raises strongroom.errors.KeyLockedError: the PIN is locked, or none is available.
        :raises strongroom.errors.SecretSourceError: the PIN's file or command is unusable.
        """
        parsed = blob_format.parse(blob)  # before anyone is asked for a PIN
        label = self._label(context.account)
        with self._session(context, unlocking=True) as session:
            keys = self._keys(session, label)
            if not keys:
                raise self._no_key(label)
            key = keys.get(parsed.key_id)
            if key is None:
                raise AuthenticationError  # another token, a replaced or rotated-away key
            check_root(key, label, self._login.token_label)
            secret = open_sealed(key, parsed.nonce, parsed.aad(context), parsed.sealed)
            self._delete_older(session, keys, parsed.key_id, label)
        return secret

    def destroy(self, account: str) -> None:
        """Delete every root key of ``account`` from the token, then its generation.

        :raises strongroom.errors.KeyUnavailableError: the token cannot be reached
            or refused the deletion.
        """
        label = self._label(account)
        with self._session(_login_context(account)) as session:
            for key in self._keys(session, label).values():
                key.destroy()
            for data in self._generation_objects(session, label):
                data.destroy()

    def record_generation(self, account: str, generation: int) -> None:
        """Raise the generation kept on the token for ``account``; never lower it.

        :raises strongroom.errors.KeyUnavailableError: the token cannot be reached.
        :raises strongroom.errors.IntegrityError: a kept value is malformed.
        """
        if generation < 0:
            raise ValueError("a key-record generation is not negative")
        label = self._label(account)
        with self._session(_login_context(account)) as session:
            kept = self._generations(session, label)
            if kept and max(kept.values()) >= generation:
                return
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: label,
                    Attribute.APPLICATION: GENERATION_APPLICATION,
                    Attribute.VALUE: str(generation).encode("ascii"),
                }
            )
            for data, value in self._generations(session, label).items():
                if value < generation:
                    data.destroy()

    def recorded_generation(self, account: str) -> int | None:
        """The highest generation kept on the token for ``account``, or ``None``.

        :raises strongroom.errors.KeyUnavailableError: the token cannot be reached.
        :raises strongroom.errors.IntegrityError: a kept value is malformed.
        """
        with self._session(_login_context(account)) as session:
            kept = self._generations(session, self._label(account))
        return max(kept.values()) if kept else None

    # the token

    def _label(self, account: str) -> str:
        return self._params.key_label.replace(ACCOUNT, account)

    @contextlib.contextmanager
    def _session(
        self, context: WrapContext, *, unlocking: bool = False
    ) -> Iterator[pkcs11.Session]:
        """One call into the token: the process lock, the login, and translated errors.

        A token that went away drops the shared login, so the next call logs
        in afresh; when ``unlocking``, the error names the way back to the account.
        """
        with TOKEN_LOCK:
            try:
                with translated(self._login.token_label):
                    yield self._login.session(lambda: self._read_pin(context))
            except (ProviderUnreachableError, ProviderKeyLostError) as exc:
                if isinstance(exc, ProviderUnreachableError):  # the token failed under us
                    self._login.drop()
                way_back = f": {RECOVERY}" if unlocking else ""
                raise type(exc)(f"{exc}; this provider's root is unusable{way_back}") from (
                    exc.__cause__
                )

    def _read_pin(self, context: WrapContext) -> str:
        answer = self._source(SecretRequest(context, new=False))
        if isinstance(answer, Secret):
            answer = bytes(answer.view())
        if not isinstance(answer, (str, bytes)):
            raise KeyLockedError(f"no PIN was given for token {self._params.token_label!r}")
        if isinstance(answer, bytes):
            try:
                answer = answer.decode("utf-8")
            except UnicodeDecodeError:
                raise UnlockFailedError(
                    f"the PIN for token {self._params.token_label!r} is not UTF-8 text"
                ) from None
        if not answer:
            raise UnlockFailedError(f"an empty PIN is refused (token {self._params.token_label!r})")
        return answer

    def _seal(self, secret: bytes, context: WrapContext, *, new_key: bool) -> bytes:
        label = self._label(context.account)
        with self._session(context) as session:
            keys = self._keys(session, label)
            newest = max(keys, key=_order, default=None)
            if newest is None or new_key:
                serial = _order(newest)[0] + 1 if newest is not None else 1
                if serial > blob_format.MAX_SERIAL:
                    raise KeyUnavailableError(
                        f"token {self._login.token_label!r} holds a key labelled {label!r} "
                        "with the last serial; no newer root can be made (remove that key)"
                    )
                identifier = blob_format.key_id(serial)
                keys[identifier] = generate_root(session, label, identifier)
                newest = identifier
            key = keys[newest]
            check_root(key, label, self._login.token_label)
            header = blob_format.new_header(newest)
            parsed = blob_format.Blob(header, b"")
            return header + seal(key, parsed.nonce, parsed.aad(context), secret)

    def _keys(self, session: pkcs11.Session, label: str) -> dict[bytes, pkcs11.SecretKey]:
        """The account's root keys by CKA_ID (only ids this provider makes)."""
        found: dict[bytes, pkcs11.SecretKey] = {}
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        for key in session.get_objects(template):
            if not isinstance(key, pkcs11.SecretKey):
                continue
            identifier = bytes(key[Attribute.ID])
            if blob_format.key_serial(identifier) is None:
                continue
            if identifier in found:  # ids carry 8 random bytes: a copy was planted
                raise KeyUnavailableError(
                    f"token {self._login.token_label!r} holds two keys labelled {label!r} "
                    "with the same id; refusing to guess which is the root"
                )
            found[identifier] = key
        return found

    def _delete_older(
        self,
        session: pkcs11.Session,
        keys: dict[bytes, pkcs11.SecretKey],
        used: bytes,
        label: str,
    ) -> None:
        """Shred the keys a rotation left behind: those older than the one that just opened."""
        for identifier, key in keys.items():
            if _order(identifier) < _order(used):
                try:
                    key.destroy()
                except pkcs11.PKCS11Error as exc:  # best effort: the next unlock tries again
                    log.warning(
                        "could not delete a rotated-away key labelled %r on token %r: %s",
                        label,
                        self._login.token_label,
                        type(exc).__name__,
                    )

    def _generation_objects(self, session: pkcs11.Session, label: str) -> list[pkcs11.Object]:
        template = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.LABEL: label,
            Attribute.APPLICATION: GENERATION_APPLICATION,
        }
        return list(session.get_objects(template))

    def _generations(self, session: pkcs11.Session, label: str) -> dict[pkcs11.Object, int]:
        kept: dict[pkcs11.Object, int] = {}
        for data in self._generation_objects(session, label):
            value = bytes(data[Attribute.VALUE])
            if _GENERATION.fullmatch(value) is None:
                raise IntegrityError(
                    f"token {self._login.token_label!r}: the generation object labelled "
                    f"{label!r} does not hold a decimal number"
                )
            kept[data] = int(value)
        return kept

    def _no_key(self, label: str) -> ProviderKeyLostError:
        """Raised inside :meth:`_session`, which adds the way back to the account."""
        return ProviderKeyLostError(
            f"token {self._login.token_label!r} holds no key labelled {label!r}: it was "
            "deleted or never made there"
        )

    def __repr__(self) -> str:
        params = self._params
        source = "caller" if self._custom_source else str(params.pin or "terminal")
        return (
            f"<Pkcs11Provider library={params.library!r} token={params.token_label!r} "
            f"key_label={params.key_label!r} {params.mechanism}, PIN from {source}>"
        )


def _order(identifier: bytes) -> tuple[int, bytes]:
    """Newest first by serial; ties (two processes rotating at once) by the random tail."""
    return (blob_format.key_serial(identifier) or 0, identifier)


def _login_context(account: str) -> WrapContext:
    """What a PIN request names when no wrap is being made: the account's login."""
    return WrapContext(account, "token login", 0)
