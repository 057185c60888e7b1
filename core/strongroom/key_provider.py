"""The ``KeyProvider`` slot: the root of trust that wraps the master key.

A provider wraps a secret so that only it can unwrap it again, binding a
context (account, purpose, version) as associated data: a blob wrapped for
one context does not unwrap under another.  Where its backend allows, the
provider's own root key never leaves that backend (keystore, Vault, HSM).
"""

from __future__ import annotations

import contextlib
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from strongroom.backend import Backend, S_co
from strongroom.errors import UsageError

if TYPE_CHECKING:
    from strongroom.secret import Secret

__all__ = ["KeyProvider", "KeyProviderTraits", "SecretRequest", "SecretSource", "WrapContext"]


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped secret is for; bound to the wrap as associated data."""

    account: str
    purpose: str
    version: int

    def encode(self) -> bytes:
        """Canonical bytes: a label, then each field length-prefixed (u16 big-endian)."""
        fields = (self.account.encode(), self.purpose.encode(), str(self.version).encode())
        return b"strongroom/wrap/v1" + b"".join(
            struct.pack(">H", len(field)) + field for field in fields
        )


@dataclass(frozen=True)
class SecretRequest:
    """What a key provider asks an application's secret source for."""

    #: The wrap being made or opened: say which account it is for when asking.
    context: WrapContext
    #: ``True`` for a new wrap: an interactive source should ask twice and compare.
    new: bool
    #: ``True`` when the secret is being changed: answer with the *new* one, never the current.
    change: bool = False


#: An application's own source of a provider's secret (a passphrase, a PIN):
#: answers a :class:`SecretRequest` with text, bytes or a
#: :class:`~strongroom.secret.Secret`, or raises a
#: :class:`~strongroom.errors.KeyUnavailableError` (the user cancelled).
SecretSource = Callable[[SecretRequest], "str | bytes | Secret"]


@dataclass(frozen=True)
class KeyProviderTraits:
    """What a provider promises, shown by ``strongroom status`` and used by policy."""

    #: The root key cannot be read out of its backend, even by this process.
    non_exportable_root: bool
    #: Unwrapping needs the user: a passphrase, PIN, biometric or touch.
    needs_user_presence: bool
    #: The root outlives an uninstall and reinstall of the application.
    survives_reinstall: bool
    #: Kept for a lost root only: unlocking tries it when named (``strongroom
    #: recover``), never in the fall-through from one provider to the next.
    recovery_only: bool = False


class KeyProvider(Backend[S_co], ABC):
    """Wraps and unwraps secrets under a root the provider keeps."""

    #: Required: what the provider promises (checked when the backend loads).
    traits: ClassVar[KeyProviderTraits]

    @classmethod
    def declaration_problems(cls) -> list[str]:
        problems = super().declaration_problems()
        if not isinstance(getattr(cls, "traits", None), KeyProviderTraits):
            problems.append("declares no traits (a KeyProviderTraits class attribute)")
        return problems

    @abstractmethod
    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Return an opaque blob that only this provider can unwrap under ``context``.

        :raises strongroom.errors.KeyLockedError: the backing keystore is locked.
        :raises strongroom.errors.ProviderUnreachableError: its service is absent.
        :raises strongroom.errors.UnlockFailedError: the user's passphrase or PIN was refused.
        """

    @abstractmethod
    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Recover the secret that :meth:`wrap` sealed under the same ``context``.

        Raise only the errors below: unlocking tries the account's providers
        in turn and any of them moves on to the next; when all fail, their
        answers are reported together (exit 4, or 3 when every wrap failed
        to authenticate).  Any other exception is a bug in the provider.

        :raises strongroom.errors.AuthenticationError: ``blob`` was altered or was
            wrapped under another context or root.
        :raises strongroom.errors.IntegrityError: ``blob`` is not of this
            provider's format at all.
        :raises strongroom.errors.SecretSourceError: the configured source of
            the user's secret (a file, a command) cannot be used.
        :raises strongroom.errors.KeyLockedError: the backing keystore is locked.
        :raises strongroom.errors.ProviderUnreachableError: its service is absent.
        :raises strongroom.errors.UnlockFailedError: the user's passphrase or PIN was refused.
        """

    def use_secret(self, source: SecretSource) -> None:
        """Take the user's secret from ``source``, an application's own prompt, from now on.

        Instead of the configured sources (a file, a command, the terminal):
        the application hands the secret over in process, never through the
        environment, a file or a command line.

        :raises strongroom.errors.UsageError: this provider takes no secret from its user.
        """
        raise UsageError(f"the {type(self).__name__} key provider takes no secret from its user")

    def forget_secrets(self) -> None:
        """Wipe whatever secret the provider holds from its user, in every thread.

        Called when the account's session locks or closes, so that unlocking
        again asks the user.  The default holds nothing.
        """

    @contextlib.contextmanager
    def holding_secrets(self) -> Iterator[None]:
        """Within this, a secret read from the user is asked for once and reused.

        One operation (unlocking then rotating the master key, say) then
        prompts once.  A provider that reads a secret keeps it in a
        :class:`~strongroom.secret.Secret` and wipes it when the outermost
        ``holding_secrets`` ends; the default holds nothing.
        """
        yield

    def rewrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Wrap ``secret`` afresh for an account this provider already wraps.

        Called when the user changes what the provider's root depends on
        (``strongroom keys rotate --provider NAME``): the passphrase
        provider asks for a *new* passphrase here, never the current one.
        The default wraps as :meth:`wrap` does.

        :raises strongroom.errors.KeyUnavailableError: as :meth:`wrap`, or no
            new secret was supplied.
        """
        return self.wrap(secret, context)

    def rotate_root(self, blob: bytes, context: WrapContext) -> bytes | None:
        """Move the provider's own root to a new version and re-wrap ``blob`` under it.

        ``strongroom keys rotate --provider NAME`` asks this first, with the
        account's current wrap: a backend that re-wraps in place (Vault
        Transit's ``rewrap``) returns the new blob, and the secret is never
        handed to the provider.  ``None``, the default, means it cannot, and
        :meth:`rewrap` is then called with the secret, as before.

        :raises strongroom.errors.KeyUnavailableError: as :meth:`unwrap`.
        :raises strongroom.errors.IntegrityError: ``blob`` is malformed or altered.
        """
        return None

    def renew(
        self, secret: bytes, context: WrapContext, *, previous: bytes, previous_context: WrapContext
    ) -> bytes:
        """Wrap ``secret`` under the same root that wrapped ``previous``, proving that root first.

        A master-key rotation re-wraps the new master key for every provider
        through this, so that a provider whose user supplies its root (a
        passphrase) cannot be switched to another root by a typo: the
        supplied root must open ``previous`` (the current wrap, under
        ``previous_context``) before anything is wrapped.  The default
        unwraps ``previous`` and wipes the result, then calls :meth:`wrap`;
        the passphrase provider overrides it to ask for the passphrase once.

        :raises strongroom.errors.KeyUnavailableError: as :meth:`unwrap`: the
            root does not open ``previous``, or cannot be reached.
        :raises strongroom.errors.IntegrityError: ``previous`` is malformed or altered.
        """
        proof = bytearray(self.unwrap(previous, previous_context))
        proof[:] = bytes(len(proof))
        return self.wrap(secret, context)

    def destroy(self, account: str) -> None:
        """Erase the provider's root for ``account``, where it holds one.

        After this no blob it wrapped for that account can be unwrapped.  The
        default has nothing to erase (a passphrase lives only in the user's head).

        :raises strongroom.errors.KeyUnavailableError: the backend cannot be reached.
        """

    def saved(self, account: str) -> None:
        """The account's key record was written: the wraps made since the last write are in effect.

        Called after every write of the record, under its lock.  A provider
        that must tell its user something about a new wrap (a recovery key
        to write down) says it here, never in :meth:`wrap`: a wrap whose
        record write fails, or is retried, never takes effect.  The default
        does nothing.
        """

    def record_generation(self, account: str, generation: int) -> None:
        """Keep ``generation``, the key record's write counter, beside the account's root.

        Called under the record's lock after every write of the record, so
        the value only grows.  A provider that can keep a little state next
        to its root (a keyring item, a Vault entry, a token object) stores
        it there; the key hierarchy then refuses a key record older than it
        (a restored backup that would bring destroyed keys back).  The
        default keeps nothing, and such a provider offers no rollback
        protection.

        :raises strongroom.errors.KeyUnavailableError: the backend cannot be reached.
        """

    def recorded_generation(self, account: str) -> int | None:
        """The generation :meth:`record_generation` kept for ``account``, or ``None``.

        ``None`` means the provider keeps none (the default), or none was
        recorded for this account yet.

        :raises strongroom.errors.KeyUnavailableError: the backend cannot be reached.
        :raises strongroom.errors.IntegrityError: the kept value is malformed.
        """
        return None
