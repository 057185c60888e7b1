"""``MemoryKeyProvider`` and ``KeyProviderContract``: the test provider keeps the interface.

The contract runs against the memory provider here, against the passphrase
provider in ``tests/plugins/test_passphrase_provider.py`` and against the OS
keyring provider on a real gnome-keyring in ``tests/plugins/test_keyring_provider.py``.
The last tests feed the contract deliberately broken providers, to show that
each of its checks can fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderUnreachableError,
    UnlockFailedError,
    UsageError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.testing import KeyProviderContract, MemoryKeyProvider, make_account_keys

SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


class TestMemoryKeyProvider(KeyProviderContract):
    def make_provider(self) -> KeyProvider:
        return MemoryKeyProvider()

    def make_foreign_provider(self) -> KeyProvider:
        return MemoryKeyProvider()  # another random KEK


def test_a_shared_kek_opens_what_another_instance_wrapped() -> None:
    kek = os.urandom(32)
    blob = MemoryKeyProvider(kek=kek).wrap(SECRET, CONTEXT)
    assert MemoryKeyProvider(kek=kek).unwrap(blob, CONTEXT) == SECRET
    with pytest.raises(AuthenticationError):
        MemoryKeyProvider().unwrap(blob, CONTEXT)
    with pytest.raises(UsageError, match="32 bytes"):
        MemoryKeyProvider(kek=bytes(16))


def test_a_failed_tag_is_an_authentication_error_with_no_library_error_inside() -> None:
    blob = MemoryKeyProvider().wrap(SECRET, CONTEXT)
    with pytest.raises(AuthenticationError) as caught:
        MemoryKeyProvider().unwrap(blob, CONTEXT)  # another KEK
    assert str(caught.value) == str(AuthenticationError())  # no detail: no oracle
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_refuse_fails_unwrapping_like_a_wrong_passphrase() -> None:
    provider = MemoryKeyProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    provider.refuse = True
    with pytest.raises(UnlockFailedError, match=r"^refused$"):
        provider.unwrap(blob, CONTEXT)
    provider.wrap(SECRET, CONTEXT)  # wrapping is not refused
    provider.refuse = False
    assert provider.unwrap(blob, CONTEXT) == SECRET


@pytest.mark.parametrize(
    "error", [KeyLockedError("locked"), ProviderUnreachableError("unreachable")]
)
def test_fail_makes_every_call_raise_that_error(error: KeyUnavailableError) -> None:
    provider = MemoryKeyProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    provider.record_generation("alice", 2)
    provider.fail = error
    for call in (
        lambda: provider.wrap(SECRET, CONTEXT),
        lambda: provider.unwrap(blob, CONTEXT),
        lambda: provider.destroy("alice"),
        lambda: provider.record_generation("alice", 3),
        lambda: provider.recorded_generation("alice"),
    ):
        with pytest.raises(type(error)) as caught:
            call()
        assert caught.value is error
    provider.fail = None
    assert provider.recorded_generation("alice") == 2  # nothing changed meanwhile
    assert provider.destroyed == []
    assert provider.unwrap(blob, CONTEXT) == SECRET


def test_destroy_calls_are_recorded() -> None:
    provider = MemoryKeyProvider()
    provider.destroy("alice")
    provider.destroy("bob")
    provider.destroy("alice")
    assert provider.destroyed == ["alice", "bob", "alice"]


def test_a_closed_provider_is_unreachable() -> None:
    with MemoryKeyProvider() as provider:
        blob = provider.wrap(SECRET, CONTEXT)
    for call in (lambda: provider.wrap(SECRET, CONTEXT), lambda: provider.unwrap(blob, CONTEXT)):
        with pytest.raises(ProviderUnreachableError, match="closed"):
            call()
    assert repr(provider) == "<MemoryKeyProvider (for tests only, KEK hidden)>"


def test_the_hierarchy_refuses_a_record_older_than_the_kept_generation(tmp_path: Path) -> None:
    provider = MemoryKeyProvider()
    keys = make_account_keys(tmp_path / "alice", provider=provider)
    keys.create()
    record = tmp_path / "alice" / "keys.json"
    shutil.copy2(record, tmp_path / "old.json")
    kept = provider.recorded_generation("alice")
    assert kept is not None
    keys.rotate_master()
    newer = provider.recorded_generation("alice")
    assert newer is not None
    assert newer > kept
    keys.lock()
    shutil.copy2(tmp_path / "old.json", record)  # a backup put back
    with pytest.raises(IntegrityError, match="older"):
        make_account_keys(tmp_path / "alice", provider=provider).unlock()


# -- the contract fails broken providers ------------------------------------------------------


class LeaksInvalidTag(MemoryKeyProvider):
    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        return AESGCM(bytes(32)).decrypt(blob[:12], blob[12:], context.encode())


class IgnoresContext(MemoryKeyProvider):
    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        return super().wrap(secret, WrapContext("any", "any", 0))

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        return super().unwrap(blob, WrapContext("any", "any", 0))


class LowersGeneration(MemoryKeyProvider):
    def record_generation(self, account: str, generation: int) -> None:
        self._generations[account] = generation


class KeepsRootOnDestroy(MemoryKeyProvider):
    def destroy(self, account: str) -> None:
        self.destroyed.append(account)


class KeepsGenerationOnDestroy(MemoryKeyProvider):
    def destroy(self, account: str) -> None:
        kept = self._generations.get(account)
        super().destroy(account)
        if kept is not None:
            self._generations[account] = kept


@pytest.mark.parametrize(
    ("broken", "check", "failure"),
    [
        (LeaksInvalidTag, "test_an_altered_blob_is_refused", InvalidTag),
        (IgnoresContext, "test_the_context_is_bound", pytest.fail.Exception),
        (LowersGeneration, "test_the_generation_only_rises", AssertionError),
        (KeepsRootOnDestroy, "test_destroy_erases_the_accounts_root_only", pytest.fail.Exception),
        (KeepsGenerationOnDestroy, "test_destroy_forgets_the_generation", AssertionError),
    ],
)
def test_the_contract_catches_a_broken_provider(
    broken: type[MemoryKeyProvider], check: str, failure: type[BaseException]
) -> None:
    contract = TestMemoryKeyProvider()
    run = getattr(contract, check)
    arguments = {"other": WrapContext("bob", "master", 1)} if "context" in check else {}
    run(MemoryKeyProvider(), **arguments)  # the sound provider passes
    with pytest.raises(failure):
        run(broken(), **arguments)
