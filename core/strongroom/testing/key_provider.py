"""``KeyProviderContract``: what every key provider must do, as pytest tests.

Subclass it and say how to build your provider against a real backend::

    from strongroom.testing import KeyProviderContract

    class TestMyProvider(KeyProviderContract):
        def make_provider(self):
            return MyProvider(MyProvider.Settings(url=...))

Override the ``provider`` fixture instead when building it needs other
fixtures (a running service).  :meth:`make_foreign_provider` gives a
provider of the same kind under *another* root (another passphrase, key or
token); without it the wrong-root check is skipped, and says so.  Class
attributes describe what the provider promises, so that the suite checks
exactly that: ``refusal`` is what unwrapping an altered blob raises, ``destroys_root`` whether
:meth:`~strongroom.key_provider.KeyProvider.destroy` erases something, and
``keeps_generation`` whether it offers rollback protection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyUnavailableError,
    StrongroomError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext

__all__ = ["KeyProviderContract"]

_SECRET = bytes(range(32))
_CONTEXT = WrapContext("alice", "master", 1)
_OTHER_CONTEXTS = (
    WrapContext("bob", "master", 1),
    WrapContext("alice", "files", 1),
    WrapContext("alice", "master", 2),
)


class KeyProviderContract:
    """Subclass with :meth:`make_provider` (or override the ``provider`` fixture)."""

    #: What unwrap raises for an altered blob or another context.  A provider
    #: whose root is something the user supplies cannot tell a wrong one from
    #: an altered blob and may answer UnlockFailedError instead.
    refusal: ClassVar[type[StrongroomError]] = AuthenticationError
    #: ``destroy`` erases the account's root: its blobs never unwrap again.
    destroys_root: ClassVar[bool] = True
    #: ``record_generation`` keeps a value that ``recorded_generation`` returns.
    keeps_generation: ClassVar[bool] = True

    def make_provider(self) -> KeyProvider:
        """A fresh provider on a backend holding nothing for the test accounts."""
        raise NotImplementedError("subclass KeyProviderContract with make_provider()")

    def make_foreign_provider(self) -> KeyProvider | None:
        """A provider of the same kind under another root, or None if there can be none."""
        return None

    @pytest.fixture
    def provider(self) -> Iterator[KeyProvider]:
        with self.make_provider() as provider:
            yield provider

    @pytest.fixture
    def foreign(self) -> Iterator[KeyProvider]:
        foreign = self.make_foreign_provider()
        if foreign is None:
            pytest.skip("make_foreign_provider() gives no provider under another root")
        with foreign:
            yield foreign

    # wrapping

    @pytest.mark.parametrize("size", [1, 32, 64])
    def test_round_trip(self, provider: KeyProvider, size: int) -> None:
        secret = _SECRET * 2
        blob = provider.wrap(secret[:size], _CONTEXT)
        assert isinstance(blob, bytes)
        assert provider.unwrap(blob, _CONTEXT) == secret[:size]

    def test_the_blob_does_not_hold_the_secret(self, provider: KeyProvider) -> None:
        blob = provider.wrap(_SECRET, _CONTEXT)
        assert _SECRET not in blob
        assert _SECRET[:16] not in blob
        assert _SECRET not in repr(provider).encode()

    @pytest.mark.parametrize("other", _OTHER_CONTEXTS, ids=["account", "purpose", "version"])
    def test_the_context_is_bound(self, provider: KeyProvider, other: WrapContext) -> None:
        provider.wrap(b"bob's own key", WrapContext("bob", "master", 1))  # bob has a root too
        blob = provider.wrap(_SECRET, _CONTEXT)
        with pytest.raises(self.refusal):
            provider.unwrap(blob, other)

    def test_an_altered_blob_is_refused(self, provider: KeyProvider) -> None:
        blob = provider.wrap(_SECRET, _CONTEXT)
        last = len(blob) - 1
        for index in sorted({0, 1, 4, 5, last // 2, last - 16, last}):
            tampered = bytearray(blob)
            tampered[index] ^= 0x01
            with pytest.raises((IntegrityError, self.refusal)):  # never a library's own error
                provider.unwrap(bytes(tampered), _CONTEXT)
        for size in sorted({0, 1, last // 2, last}):
            with pytest.raises((IntegrityError, self.refusal)):
                provider.unwrap(blob[:size], _CONTEXT)
        with pytest.raises((IntegrityError, self.refusal)):
            provider.unwrap(blob + b"\0", _CONTEXT)
        assert provider.unwrap(blob, _CONTEXT) == _SECRET

    def test_another_root_cannot_unwrap(self, provider: KeyProvider, foreign: KeyProvider) -> None:
        """Another root's answer is the documented refusal, so unlocking tries the next provider."""
        foreign.wrap(b"the foreign root's own key", _CONTEXT)  # it has a root for alice too
        blob = provider.wrap(_SECRET, _CONTEXT)
        with pytest.raises(self.refusal) as caught:
            foreign.unwrap(blob, _CONTEXT)
        assert _SECRET.hex() not in str(caught.value)
        assert provider.unwrap(blob, _CONTEXT) == _SECRET

    # destroying the root

    def test_destroy_erases_the_accounts_root_only(self, provider: KeyProvider) -> None:
        bob = WrapContext("bob", "master", 1)
        blob, bob_blob = provider.wrap(_SECRET, _CONTEXT), provider.wrap(b"bob", bob)
        provider.destroy("alice")
        provider.destroy("alice")  # idempotent
        provider.destroy("nobody")  # nothing to erase: quiet
        assert provider.unwrap(bob_blob, bob) == b"bob"
        if not self.destroys_root:
            assert provider.unwrap(blob, _CONTEXT) == _SECRET
            return
        with pytest.raises(KeyUnavailableError):
            provider.unwrap(blob, _CONTEXT)
        # A new wrap makes a new root; what the old one wrapped stays unrecoverable.
        assert provider.unwrap(provider.wrap(_SECRET, _CONTEXT), _CONTEXT) == _SECRET
        with pytest.raises((KeyUnavailableError, self.refusal)):
            provider.unwrap(blob, _CONTEXT)

    # rollback protection

    def test_the_generation_only_rises(self, provider: KeyProvider) -> None:
        assert provider.recorded_generation("alice") is None
        for generation, kept in ((3, 3), (2, 3), (3, 3), (7, 7)):
            provider.record_generation("alice", generation)
            expected = kept if self.keeps_generation else None
            assert provider.recorded_generation("alice") == expected
        assert provider.recorded_generation("bob") is None

    def test_destroy_forgets_the_generation(self, provider: KeyProvider) -> None:
        provider.wrap(_SECRET, _CONTEXT)
        provider.record_generation("alice", 5)
        provider.record_generation("bob", 4)
        provider.destroy("alice")
        assert provider.recorded_generation("alice") is None
        assert provider.recorded_generation("bob") == (4 if self.keeps_generation else None)
        provider.record_generation("alice", 1)  # a new account of the same name starts over
        assert provider.recorded_generation("alice") == (1 if self.keeps_generation else None)

    # metadata

    def test_declares_its_traits(self, provider: KeyProvider) -> None:
        assert isinstance(type(provider).traits, KeyProviderTraits)
        assert type(provider).declaration_problems() == []

    def test_its_repr_holds_no_secret(self, provider: KeyProvider) -> None:
        blob = provider.wrap(_SECRET, _CONTEXT)
        provider.unwrap(blob, _CONTEXT)
        shown = repr(provider) + str(provider)
        for secret in (_SECRET, blob):
            assert secret.hex() not in shown
            assert repr(secret)[2:-1] not in shown

    def test_close_is_idempotent(self, provider: KeyProvider) -> None:
        provider.close()
        provider.close()
