"""The token calls the pkcs11 provider makes, and the translation of their errors.

Everything that touches python-pkcs11 is here, so that the provider reads
as key management and the PKCS#11 rules sit in one place:

- **One library per path, loaded once per process.**  ``pkcs11.lib(path)``
  keeps the module it loaded and initialised in a dictionary of its own
  (python-pkcs11 0.10), so every provider on that path shares one; it is
  finalised only by ``pkcs11.unload`` (never called here) or at exit.
  SoftHSM reads ``SOFTHSM2_CONF`` at that first load only.
- **One login per token per process, shared.**  PKCS#11 login state
  belongs to the application, not to a session: a second ``C_Login`` is
  refused (already logged in) and python-pkcs11's ``Session.close`` calls
  ``C_Logout``, which would log out every other session on the token.  So
  providers share one logged-in read/write session per (library, token),
  counted by :class:`TokenLogin` holders; the last one to let go closes it.
  A PIN is therefore checked only by the first login of a process.
- **One call at a time.**  python-pkcs11 sessions are not thread-safe; a
  process-wide lock serialises every token call.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams, Mechanism
from pkcs11.types import DecryptMixin, EncryptMixin

from strongroom.errors import (
    AuthenticationError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    StrongroomError,
    UnlockFailedError,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

__all__ = [
    "GENERATION_APPLICATION",
    "TOKEN_LOCK",
    "TokenLogin",
    "check_root",
    "generate_root",
    "open_sealed",
    "seal",
    "translated",
]

#: ``CKA_APPLICATION`` of the data objects that keep a key record's generation.
GENERATION_APPLICATION: Final = "strongroom key-record generation"
#: Serialises every call into a PKCS#11 module in this process.
TOKEN_LOCK: Final = threading.RLock()
_TAG_BITS: Final = 128

_LOGINS: dict[tuple[str, str], _SharedLogin] = {}

#: The token or its slot went away under an open session.
_GONE = (
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.DeviceMemory,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.SlotIDInvalid,
)


def load_library(path: str) -> Library:
    """The PKCS#11 module at ``path``, loaded once for the process (python-pkcs11 caches it).

    :raises strongroom.errors.ProviderUnreachableError: no file there, or it
        is not a PKCS#11 module that initialises.
    """
    with TOKEN_LOCK:
        if not Path(path).is_file():
            raise ProviderUnreachableError(
                f"no PKCS#11 library at {path}: install it or fix the 'library' setting"
            )
        try:
            return pkcs11.lib(path)
        except p11.PKCS11Error as exc:
            raise ProviderUnreachableError(
                f"the PKCS#11 library {path} could not be loaded ({type(exc).__name__})"
            ) from exc


class TokenLogin:
    """A provider's hold on its process's login to one token.

    :param library: absolute path of the PKCS#11 module.
    :param token_label: ``CKA_LABEL`` of the token (slot ids are not stable).
    """

    def __init__(self, library: str, token_label: str) -> None:
        self._key = (library, token_label)
        self._held = False

    @property
    def token_label(self) -> str:
        return self._key[1]

    def session(self, read_pin: Callable[[], str]) -> pkcs11.Session:
        """The shared logged-in session, logging in with ``read_pin()`` if nobody has.

        Call under :data:`TOKEN_LOCK`.

        :raises strongroom.errors.ProviderUnreachableError: the library cannot be loaded.
        :raises strongroom.errors.ProviderKeyLostError: no token with that label is present.
        :raises strongroom.errors.UnlockFailedError: the token refused the PIN.
        :raises strongroom.errors.KeyLockedError: the user PIN is locked, expired
            or was never set.
        """
        shared = _LOGINS.get(self._key)
        if shared is not None and not self._held:
            # Joining a login another holder made: the token checks no PIN while logged
            # in, so this one is compared with the PIN that logged in; one that differs
            # is put to the token itself (which counts it), after logging everyone out.
            pin = read_pin()
            if not shared.admits(pin):
                del _LOGINS[self._key]
                shared.close()
                shared = None
                read_pin = lambda: pin  # noqa: E731 - asked once
        if shared is None:
            session, pin_used = self._login(read_pin)
            shared = _SharedLogin(session, pin_used)
            _LOGINS[self._key] = shared
        if not self._held:
            shared.holders += 1
            self._held = True
        return shared.session

    def release(self) -> None:
        """Let go of the login; the last holder's release closes the session (logs out)."""
        with TOKEN_LOCK:
            if not self._held:
                return
            self._held = False
            shared = _LOGINS.get(self._key)
            if shared is None:
                return
            shared.holders -= 1
            if shared.holders <= 0:
                del _LOGINS[self._key]
                shared.close()

    def drop(self) -> None:
        """Forget the shared session for everyone: the token went away under it."""
        with TOKEN_LOCK:
            shared = _LOGINS.pop(self._key, None)
            self._held = False
            if shared is not None:
                shared.close()

    def _login(self, read_pin: Callable[[], str]) -> tuple[pkcs11.Session, str | None]:
        """A logged-in session, and the PIN the token accepted (``None``: it checked none)."""
        library_path, label = self._key
        library = load_library(library_path)
        with translated(label):
            token = _find_token(library, library_path, label)
            _check_pin_state(token.flags, label)
            pin = read_pin()
            try:
                return token.open(rw=True, user_pin=pin), pin
            except p11.UserAlreadyLoggedIn:
                # Someone else in this process logged in outside these holders.
                return token.open(rw=True), None
            except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange) as exc:
                raise UnlockFailedError(
                    f"token {label!r} refused the PIN{_tries_left(token.flags)}"
                ) from exc


class _SharedLogin:
    def __init__(self, session: pkcs11.Session, pin: str | None) -> None:
        self.session = session
        self.holders = 0
        # Not the PIN: a keyed digest of it, to check a PIN offered by a later holder.
        self._key = os.urandom(32)
        self._verifier = None if pin is None else self._digest(pin)

    def _digest(self, pin: str) -> bytes:
        return hmac.new(self._key, pin.encode("utf-8"), hashlib.sha256).digest()

    def admits(self, pin: str) -> bool:
        """``pin`` is the one the token accepted at login (``False`` when it checked none)."""
        return self._verifier is not None and hmac.compare_digest(self._verifier, self._digest(pin))

    def close(self) -> None:
        with contextlib.suppress(p11.PKCS11Error):  # already gone with its token
            self.session.close()


def _find_token(library: Library, path: str, label: str) -> pkcs11.Token:
    try:
        return library.get_token(token_label=label)
    except p11.NoSuchToken:
        raise ProviderKeyLostError(
            f"no token labelled {label!r} is present in {path}: it was removed, or the "
            "library looks at another token store"
        ) from None
    except p11.MultipleTokensReturned:
        raise ProviderUnreachableError(
            f"several tokens are labelled {label!r} in {path}: refusing to guess; relabel one"
        ) from None


def _check_pin_state(flags: int, label: str) -> None:
    if flags & TokenFlag.USER_PIN_LOCKED:
        raise KeyLockedError(
            f"the user PIN of token {label!r} is locked after too many wrong PINs; "
            "its security officer must unlock it"
        )
    if not flags & TokenFlag.USER_PIN_INITIALIZED:
        raise KeyLockedError(f"token {label!r} has no user PIN set; initialise it first")


def _tries_left(flags: int) -> str:
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return " (one try left before it locks)"
    if flags & TokenFlag.USER_PIN_COUNT_LOW:
        return " (few tries left before it locks)"
    return ""


@contextlib.contextmanager
def translated(label: str) -> Iterator[None]:
    """Turn what python-pkcs11 raises into strongroom's tree; strongroom's own pass through."""
    try:
        yield
    except StrongroomError:
        raise
    except p11.PinLocked as exc:
        raise KeyLockedError(
            f"the user PIN of token {label!r} is locked after too many wrong PINs; "
            "its security officer must unlock it"
        ) from exc
    except p11.PinExpired as exc:
        raise KeyLockedError(f"the user PIN of token {label!r} has expired; change it") from exc
    except p11.UserPinNotInitialized as exc:
        raise KeyLockedError(f"token {label!r} has no user PIN set; initialise it first") from exc
    except _GONE as exc:
        raise ProviderUnreachableError(
            f"token {label!r} went away ({type(exc).__name__}): it was removed or failed"
        ) from exc
    except (p11.TokenWriteProtected, p11.SessionReadOnly) as exc:
        raise ProviderUnreachableError(f"token {label!r} is write-protected") from exc
    except p11.PKCS11Error as exc:
        raise ProviderUnreachableError(f"token {label!r} failed: {type(exc).__name__}") from exc


# keys and objects


def generate_root(session: pkcs11.Session, label: str, identifier: bytes) -> pkcs11.SecretKey:
    """Generate an AES-256 key inside the token that can never leave it.

    Sensitive and not extractable, so neither its value nor a wrap of it can
    be read out; usable for encrypt and decrypt only; not modifiable, so
    nobody can relabel it onto another account.
    """
    return session.generate_key(
        KeyType.AES,
        256,
        id=identifier,
        label=label,
        store=True,
        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
        template={
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.MODIFIABLE: False,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
        },
    )


def check_root(key: pkcs11.SecretKey, label: str, token_label: str) -> None:
    """Refuse a key that is not an AES-256 key that never left the token.

    A key imported with a value, or one that is or ever was extractable,
    may have a copy outside the token: the provider's promise of a
    non-exportable root would be false, so it is not used.

    :raises strongroom.errors.KeyUnavailableError: the key is unfit.
    """
    fit = (
        key[Attribute.KEY_TYPE] == KeyType.AES
        and key[Attribute.VALUE_LEN] == 32
        and key[Attribute.SENSITIVE] is True
        and key[Attribute.ALWAYS_SENSITIVE] is True
        and key[Attribute.EXTRACTABLE] is False
        and key[Attribute.NEVER_EXTRACTABLE] is True
    )
    if not fit:
        raise KeyUnavailableError(
            f"the key labelled {label!r} on token {token_label!r} is not a sensitive AES-256 "
            "key that never left the token; refusing to use it"
        )


def seal(key: pkcs11.SecretKey, nonce: bytes, aad: bytes, secret: bytes) -> bytes:
    """AES-256-GCM inside the token: ``ciphertext || tag``."""
    if not isinstance(key, EncryptMixin):
        raise KeyUnavailableError(f"the key labelled {key.label!r} cannot encrypt")
    sealed = key.encrypt(
        secret, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, _TAG_BITS)
    )
    return _bytes(sealed)


def open_sealed(key: pkcs11.SecretKey, nonce: bytes, aad: bytes, sealed: bytes) -> bytes:
    """Open what :func:`seal` made; the token releases nothing unless the tag verifies.

    :raises strongroom.errors.AuthenticationError: the tag failed (an altered
        blob or another context).  SoftHSM answers ``CKR_GENERAL_ERROR`` for a
        failed tag, so every refusal but a lost token counts as one.
    """
    if not isinstance(key, DecryptMixin):
        raise KeyUnavailableError(f"the key labelled {key.label!r} cannot decrypt")
    try:
        opened = key.decrypt(
            sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, _TAG_BITS)
        )
    except _GONE:
        raise
    except p11.PKCS11Error:
        raise AuthenticationError from None
    return _bytes(opened)


def _bytes(answer: object) -> bytes:
    """python-pkcs11 answers bytes for bytes in (its type says "or an iterator")."""
    if not isinstance(answer, bytes):
        raise TypeError("python-pkcs11 answered a one-shot operation with a stream")
    return answer
