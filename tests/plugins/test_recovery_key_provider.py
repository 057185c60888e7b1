"""The ``recovery-key`` provider: the contract, the printable key, and its wrap format.

The wrap's known-answer test takes its X25519 keys from RFC 7748 section
6.1 (Alice's private key as the ephemeral, Bob's public key as the
recovery key's), so the shared secret is the RFC's; the test then opens
the blob again by following the format as ``recovery_key``'s docstring
states it, with cryptography's primitives only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.errors import IntegrityError, KeyUnavailableError, UnlockFailedError
from strongroom.key_provider import KeyProvider, SecretRequest, WrapContext
from strongroom.testing import KeyProviderContract
from strongroom_plugins.providers import _recovery_code, recovery_key
from strongroom_plugins.providers.recovery_key import RecoveryKeyProvider

# RFC 7748, section 6.1
ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
CONTEXT = WrapContext("alice", "master", 1)


class Shown:
    """The recovery keys a provider showed, answering a request with the account's latest."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def show(self, text: str, context: WrapContext) -> None:
        self.keys[context.account] = text

    def answer(self, request: SecretRequest) -> str:
        return self.keys[request.context.account]


class Saved(RecoveryKeyProvider):
    """Each wrap saved at once, as the key hierarchy's record write would: its key is shown."""

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        blob = super().wrap(secret, context)
        self.saved(context.account)
        return blob


def make(shown: Shown | None = None) -> RecoveryKeyProvider:
    shown = shown if shown is not None else Shown()
    provider = Saved(show=shown.show)
    provider.use_secret(shown.answer)
    return provider


def test_a_key_is_shown_only_once_its_record_is_saved() -> None:
    shown = Shown()
    provider = RecoveryKeyProvider(show=shown.show)
    provider.wrap(b"master key", CONTEXT)
    provider.wrap(b"master key", CONTEXT)  # a retried write: only the last wrap counts
    assert shown.keys == {}
    provider.saved("alice")
    provider.saved("alice")  # once
    assert list(shown.keys) == ["alice"]
    provider.wrap(b"master key", CONTEXT)
    provider.forget_secrets()  # the session locked before any record held it
    provider.saved("alice")
    assert len(shown.keys) == 1


class TestRecoveryKeyProvider(KeyProviderContract):
    # The typed key and the blob come as one, as a passphrase does: one refusal for both.
    refusal = UnlockFailedError
    destroys_root = False  # the root is on paper
    keeps_generation = False

    def make_provider(self) -> KeyProvider:
        return make()

    def make_foreign_provider(self) -> KeyProvider:
        return make()


def test_the_printable_key_is_ten_groups_of_four_with_a_checksum() -> None:
    seed = _recovery_code.new_seed()
    text = _recovery_code.printable(seed)
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){9}", text)
    assert _recovery_code.parse(text) == seed
    forgiving = text.lower().replace("-", " ").replace("o", "0").replace("i", "1")
    assert _recovery_code.parse(forgiving.replace("b", "8") + "\n") == seed


@pytest.mark.parametrize("where", [0, 7, 21, 38])
def test_a_typo_is_refused_as_a_typo(where: int) -> None:
    text = _recovery_code.printable(_recovery_code.new_seed())
    compact = text.replace("-", "")
    typo = compact[:where] + ("A" if compact[where] != "A" else "B") + compact[where + 1 :]
    swapped = compact[:where] + compact[where + 1] + compact[where] + compact[where + 2 :]
    for wrong in (typo, swapped if swapped != compact else typo, compact[:-1], compact + "A", ""):
        with pytest.raises(UnlockFailedError, match="checksum does not match"):
            _recovery_code.parse(wrong)


def test_unwrapping_needs_the_key_that_was_shown() -> None:
    shown = Shown()
    provider = make(shown)
    first = provider.wrap(b"master key", CONTEXT)
    old_key = shown.keys["alice"]
    second = provider.wrap(b"master key", CONTEXT)  # a new recovery key
    assert shown.keys["alice"] != old_key
    assert provider.unwrap(second, CONTEXT) == b"master key"
    with pytest.raises(UnlockFailedError, match="not the one that wraps account 'alice'"):
        provider.unwrap(first, CONTEXT)
    shown.keys["alice"] = old_key
    assert provider.unwrap(first, CONTEXT) == b"master key"


def test_renew_wraps_to_the_same_key_without_asking() -> None:
    shown = Shown()
    provider = make(shown)
    previous = provider.wrap(b"old master", CONTEXT)
    key, asked = shown.keys["alice"], []
    provider.use_secret(lambda request: asked.append(request) or key)
    renewed = provider.renew(
        b"new master",
        WrapContext("alice", "master", 2),
        previous=previous,
        previous_context=CONTEXT,
    )
    assert asked == []
    assert shown.keys["alice"] == key  # nothing new shown
    assert provider.unwrap(renewed, WrapContext("alice", "master", 2)) == b"new master"
    with pytest.raises(IntegrityError):
        provider.renew(b"x", CONTEXT, previous=b"SRPW\x01" + bytes(80), previous_context=CONTEXT)


def test_a_new_key_goes_to_a_new_file_and_never_replaces_one(tmp_path: Path) -> None:
    target = tmp_path / "recovery.txt"
    provider = Saved(RecoveryKeyProvider.Settings(write_new_key_to=str(target)))
    blob = provider.wrap(b"master key", CONTEXT)
    assert target.stat().st_mode & 0o777 == 0o600
    text = target.read_text().strip()
    assert _recovery_code.parse(text)
    with pytest.raises(KeyUnavailableError, match="exists: it may hold the recovery key in use"):
        provider.wrap(b"master key", CONTEXT)
    assert target.read_text().strip() == text
    provider.use_secret(lambda _request: text)
    assert provider.unwrap(blob, CONTEXT) == b"master key"


def test_without_a_terminal_or_a_file_nothing_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_terminal(*_args: object, **_kwargs: object) -> None:
        raise OSError("no controlling terminal")

    monkeypatch.setattr("builtins.open", no_terminal)
    with pytest.raises(KeyUnavailableError, match="no terminal to show the new recovery key"):
        RecoveryKeyProvider().wrap(b"master key", CONTEXT)


def test_the_wrap_format_matches_its_specification(monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = bytes(range(12))
    monkeypatch.setattr("os.urandom", lambda size: nonce[:size])
    ephemeral = X25519PrivateKey.from_private_bytes(bytes.fromhex(ALICE_PRIVATE))
    blob = recovery_key._seal_to(
        bytes.fromhex(BOB_PUBLIC), b"the master key", CONTEXT, ephemeral=ephemeral
    )
    monkeypatch.undo()
    assert blob[:5] == b"SRRK\x01"
    assert blob[5:37].hex() == BOB_PUBLIC
    assert blob[69:81] == nonce
    # Opened again by the docstring's recipe, with Bob's private key from the RFC.
    bob = X25519PrivateKey.from_private_bytes(bytes.fromhex(BOB_PRIVATE))
    shared = bob.exchange(ephemeral.public_key())
    assert shared.hex() == SHARED
    info = b"strongroom/v1/recovery-key-kek" + blob[37:69] + blob[5:37]
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    plain = AESGCM(kek).decrypt(blob[69:81], blob[81:], blob[:81] + CONTEXT.encode())
    assert plain == b"the master key"
    assert len(blob) == 81 + len(plain) + 16
    assert blob.hex() == (
        "5352524b01de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        "000102030405060708090a0b"
        "634f258730bfe712be378d23e8f884a4e0dd71a1f2d1f115138fdd3ef569"
    )
