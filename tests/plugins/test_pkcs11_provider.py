"""The ``pkcs11`` key provider against a real SoftHSM2 token (``tests/softhsm.py``).

Every test uses key labels of its own on the session's shared tokens, so
tests never see each other's keys.  What the token holds is checked through
a session of the tests' own: that the root key is generated inside the
token and can be neither read nor wrapped out, that rotation and ``destroy``
delete keys, that the generation lives beside the key.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from test_passphrase_provider import on_a_terminal

from softhsm import SoftHsm, softhsm_session
from strongroom.audit import AuditEvent
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    StrongroomError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, SecretRequest, WrapContext
from strongroom.keys import AccountKeys
from strongroom.settings import SecretRef
from strongroom.testing import KeyProviderContract
from strongroom.testing.store import suite_resolver
from strongroom_plugins.providers import _pkcs11_token
from strongroom_plugins.providers.pkcs11 import RECOVERY, Pkcs11Provider, Pkcs11Settings

SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    return softhsm_session(tmp_path_factory)


@pytest.fixture
def label() -> str:
    """A key-label template no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}:{{account}}"


def make(
    hsm: SoftHsm,
    label: str,
    *,
    card: str | None = None,
    pin: str | None = None,
    directory: Path | None = None,
    library: str | None = None,
) -> Pkcs11Provider:
    """A provider on token ``card`` (the main one), with ``pin`` (the right one).

    With ``directory``, the PIN is read from a private file there; else it is handed over.
    """
    reference = None
    if directory is not None:
        reference = SecretRef("file", str(hsm.pin_file(directory, pin)))
    settings = Pkcs11Settings(
        library=library or hsm.library,
        token_label=card or hsm.token,
        key_label=label,
        pin=reference,
    )
    if reference is not None:
        return Pkcs11Provider(settings)
    return Pkcs11Provider(settings, pin=lambda _request: pin or hsm.pin)


def root_keys(hsm: SoftHsm, label: str) -> list[pkcs11.SecretKey]:
    with hsm.session() as session:
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        return [key for key in session.get_objects(template) if isinstance(key, pkcs11.SecretKey)]


class TestPkcs11Contract(KeyProviderContract):
    """The shared contract, on SoftHSM; the foreign root is the same label on another token."""

    @pytest.fixture(autouse=True)
    def _service(self, hsm: SoftHsm, label: str) -> None:
        self.hsm = hsm
        self.label = label

    def make_provider(self) -> KeyProvider:
        return make(self.hsm, self.label)

    def make_foreign_provider(self) -> KeyProvider:
        return make(self.hsm, self.label, card=self.hsm.foreign_token)


@pytest.fixture
def provider(hsm: SoftHsm, label: str) -> Iterator[Pkcs11Provider]:
    with make(hsm, label) as made:
        yield made


# the root never leaves the token


def test_the_root_is_generated_inside_the_token_and_cannot_be_extracted(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    provider.wrap(SECRET, CONTEXT)
    with hsm.session() as session:
        (root,) = session.get_objects(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.LABEL: label.format(account="alice"),
            }
        )
        assert isinstance(root, pkcs11.SecretKey)
        assert root[Attribute.KEY_TYPE] == KeyType.AES
        assert root[Attribute.VALUE_LEN] == 32
        assert root[Attribute.LOCAL] is True  # generated on the token, never imported
        assert root[Attribute.TOKEN] is True
        for attribute in (Attribute.SENSITIVE, Attribute.ALWAYS_SENSITIVE):
            assert root[attribute] is True
        for attribute in (Attribute.EXTRACTABLE, Attribute.WRAP, Attribute.UNWRAP):
            assert root[attribute] is False
        assert root[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(p11.AttributeSensitive):
            root[Attribute.VALUE]  # reading is the attempt
        wrapping = session.generate_key(
            KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.EXTRACTABLE: True}
        )
        assert isinstance(wrapping, pkcs11.WrapMixin)
        for mechanism in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
            with pytest.raises(p11.KeyUnextractable):
                wrapping.wrap_key(root, mechanism=mechanism)
        for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
            with pytest.raises(p11.PKCS11Error):  # SoftHSM: CKR_ACTION_PROHIBITED
                root[attribute] = value
        assert root[Attribute.EXTRACTABLE] is False


def test_a_planted_extractable_key_is_never_used(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    """A key under the account's label that could have left the token is refused."""
    with hsm.session() as session:
        session.generate_key(
            KeyType.AES,
            256,
            id=(1).to_bytes(4, "big") + bytes(8),
            label=label.format(account="alice"),
            store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    with pytest.raises(KeyUnavailableError, match="never left the token; refusing"):
        provider.wrap(SECRET, CONTEXT)


def test_two_keys_with_one_id_are_refused(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    blob = provider.wrap(SECRET, CONTEXT)
    with hsm.session() as session:
        session.generate_key(
            KeyType.AES, 256, id=blob[6:18], label=label.format(account="alice"), store=True
        )
    with pytest.raises(KeyUnavailableError, match=r"two keys .* with the same id; refusing"):
        provider.unwrap(blob, CONTEXT)


# binding


def test_a_blob_moved_to_another_account_or_key_label_is_refused(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    blob = provider.wrap(SECRET, CONTEXT)
    provider.wrap(b"bob's", WrapContext("bob", "master", 1))
    with pytest.raises(AuthenticationError):  # bob's root does not hold alice's key id
        provider.unwrap(blob, WrapContext("bob", "master", 1))
    with make(hsm, "other-" + label) as other:
        other.wrap(b"its own", CONTEXT)
        with pytest.raises(AuthenticationError):
            other.unwrap(blob, CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET


def test_an_altered_key_id_is_refused_as_altered(provider: Pkcs11Provider) -> None:
    blob = provider.wrap(SECRET, CONTEXT)
    for index in range(6, 30):  # the key id and the nonce
        tampered = bytearray(blob)
        tampered[index] ^= 0x80
        with pytest.raises(AuthenticationError):
            provider.unwrap(bytes(tampered), CONTEXT)
    with pytest.raises(IntegrityError, match="unknown mechanism"):
        provider.unwrap(blob[:5] + b"\x02" + blob[6:], CONTEXT)


def test_a_secret_of_any_length_comes_back_exactly(provider: Pkcs11Provider) -> None:
    """No padding: SoftHSM's zero-padding of key-wrap input never applies to GCM."""
    for size in (1, 7, 9, 31, 33, 255):
        secret = bytes([size]) * size
        assert provider.unwrap(provider.wrap(secret, CONTEXT), CONTEXT) == secret


# the PIN


def test_a_wrong_pin_is_refused_and_never_shown(
    hsm: SoftHsm, label: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-pin-5309"
    with make(hsm, label, card=hsm.pin_token, pin=wrong, directory=tmp_path) as refused:
        with pytest.raises(UnlockFailedError) as caught:
            refused.wrap(SECRET, CONTEXT)
        shown = [str(caught.value), repr(caught.value), repr(refused), str(refused)]
    assert str(caught.value) == f"token {hsm.pin_token!r} refused the PIN"
    with make(hsm, label, card=hsm.pin_token, directory=tmp_path) as right:
        blob = right.wrap(SECRET, CONTEXT)
        assert right.unwrap(blob, CONTEXT) == SECRET
        shown += [repr(right), str(right)]
    for text in [*shown, caplog.text]:
        assert wrong not in text
        assert hsm.pin not in text
    assert "PIN from file:" in repr(right)


def test_the_pin_is_asked_once_until_the_session_locks(hsm: SoftHsm, label: str) -> None:
    asked: list[SecretRequest] = []

    def source(request: SecretRequest) -> str:
        asked.append(request)
        return hsm.pin

    with make(hsm, label, card=hsm.pin_token) as provider:
        provider.use_secret(source)
        blob = provider.wrap(SECRET, CONTEXT)
        provider.record_generation("alice", 1)
        assert provider.unwrap(blob, CONTEXT) == SECRET
        assert [request.context for request in asked] == [CONTEXT]
        provider.forget_secrets()  # the account's session locked: the token logs out
        assert provider.unwrap(blob, CONTEXT) == SECRET
        assert len(asked) == 2
        assert "PIN from caller" in repr(provider)


def test_without_a_pin_source_or_terminal_nothing_is_asked(hsm: SoftHsm, label: str) -> None:
    settings = Pkcs11Settings(library=hsm.library, token_label=hsm.pin_token, key_label=label)
    with Pkcs11Provider(settings) as provider, pytest.raises(KeyLockedError, match="no PIN"):
        provider.wrap(SECRET, CONTEXT)


PROMPT_CHILD = r"""
import fcntl, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes our terminal: getpass opens /dev/tty
from strongroom.key_provider import WrapContext
from strongroom_plugins.providers.pkcs11 import Pkcs11Provider, Pkcs11Settings

library, token, label = sys.argv[1:4]
settings = Pkcs11Settings(library=library, token_label=token, key_label=label)
with Pkcs11Provider(settings) as provider:
    context = WrapContext("alice", "master", 1)
    blob = provider.wrap(b"pty secret", context)
    provider.record_generation("alice", 1)
    print("UNWRAPPED", provider.unwrap(blob, context).decode(), flush=True)
    provider.forget_secrets()
    print("AGAIN", provider.unwrap(blob, context).decode(), flush=True)
"""


def test_the_terminal_asks_for_the_pin_once_per_login_without_echo(
    hsm: SoftHsm, label: str
) -> None:
    argv = [sys.executable, "-c", PROMPT_CHILD, hsm.library, hsm.pin_token, label]
    with on_a_terminal(argv, {**os.environ, **hsm.env}) as (child, terminal):
        prompt = f"User PIN for token {hsm.pin_token!r} (account 'alice'): ".encode()
        terminal.expect(prompt)
        terminal.type(hsm.pin)
        terminal.expect(b"UNWRAPPED pty secret")  # one prompt for wrap, generation and unwrap
        terminal.expect(prompt)  # logged out: asked again
        terminal.type(hsm.pin)
        terminal.expect(b"AGAIN pty secret")
        assert child.wait(timeout=30) == 0
    assert terminal.transcript.count(prompt) == 2
    assert hsm.pin.encode() not in terminal.transcript  # echo was off


def test_a_locked_pin_is_its_own_error() -> None:
    """SoftHSM never locks a PIN, so the token's flag and error are fed in directly."""
    with pytest.raises(KeyLockedError, match="locked after too many wrong PINs"):
        _pkcs11_token._check_pin_state(
            TokenFlag.USER_PIN_INITIALIZED | TokenFlag.USER_PIN_LOCKED, "card"
        )
    with (
        pytest.raises(KeyLockedError, match="locked after too many wrong PINs"),
        _pkcs11_token.translated("card"),
    ):
        raise p11.PinLocked
    assert _pkcs11_token._tries_left(TokenFlag.USER_PIN_FINAL_TRY) == (
        " (one try left before it locks)"
    )


# an unusable root, told apart from a wrong PIN


def test_a_missing_token_or_library_is_an_unusable_root(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str, tmp_path: Path
) -> None:
    blob = provider.wrap(SECRET, CONTEXT)
    with make(hsm, label, card="pulled-out") as absent, pytest.raises(ProviderKeyLostError) as init:
        absent.wrap(SECRET, CONTEXT)  # no account to fall back on yet: no way back named
    assert str(init.value).endswith("; this provider's root is unusable")
    with (
        make(hsm, label, card="pulled-out") as absent,
        pytest.raises(ProviderKeyLostError) as caught,
    ):
        absent.unwrap(blob, CONTEXT)
    message = str(caught.value)
    assert message.startswith("no token labelled 'pulled-out' is present in ")
    assert message.endswith(f"this provider's root is unusable: {RECOVERY}")
    assert "\n" not in message
    assert not isinstance(caught.value, UnlockFailedError)

    missing = str(tmp_path / "libnothing.so")
    with (
        make(hsm, label, library=missing) as unloaded,
        pytest.raises(ProviderUnreachableError, match=f"^no PKCS#11 library at {missing}"),
    ):
        unloaded.unwrap(blob, CONTEXT)
    not_a_library = tmp_path / "libfake.so"
    shutil.copy("/etc/hostname", not_a_library)
    with (
        make(hsm, label, library=str(not_a_library)) as broken,
        pytest.raises(ProviderUnreachableError, match="could not be loaded"),
    ):
        broken.unwrap(blob, CONTEXT)


def test_a_deleted_key_is_an_unusable_root(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    blob = provider.wrap(SECRET, CONTEXT)
    (root,) = root_keys(hsm, label.format(account="alice"))
    with hsm.session():
        root.destroy()
    with pytest.raises(ProviderKeyLostError) as caught:  # not a refused PIN, nor an altered blob
        provider.unwrap(blob, CONTEXT)
    assert str(caught.value) == (
        f"token {hsm.token!r} holds no key labelled {label.format(account='alice')!r}: it was "
        f"deleted or never made there; this provider's root is unusable: {RECOVERY}"
    )


# rotation, destruction, generation


def test_rotation_makes_a_new_key_and_shreds_the_old_one_once_used(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    alice = label.format(account="alice")
    old = provider.wrap(SECRET, CONTEXT)
    (first,) = [bytes(key[Attribute.ID]) for key in root_keys(hsm, alice)]
    new = provider.rewrap(SECRET, CONTEXT)
    ids = sorted(bytes(key[Attribute.ID]) for key in root_keys(hsm, alice))
    assert len(ids) == 2
    assert ids[0] == first
    assert ids[1][:4] == (2).to_bytes(4, "big")
    assert new[6:18] == ids[1]
    assert provider.unwrap(old, CONTEXT) == SECRET  # the new wrap may not be saved yet
    assert len(root_keys(hsm, alice)) == 2
    assert provider.unwrap(new, CONTEXT) == SECRET  # the new key opened a wrap: shred older
    assert [bytes(key[Attribute.ID]) for key in root_keys(hsm, alice)] == [ids[1]]
    with pytest.raises(AuthenticationError):
        provider.unwrap(old, CONTEXT)
    assert provider.wrap(SECRET, CONTEXT)[6:18] == ids[1]  # wraps use the newest key


def test_destroy_deletes_every_key_and_generation_of_the_account(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    provider.wrap(SECRET, CONTEXT)
    provider.rewrap(SECRET, CONTEXT)
    provider.record_generation("alice", 4)
    provider.destroy("alice")
    assert root_keys(hsm, label.format(account="alice")) == []
    with hsm.session() as session:
        assert list(session.get_objects({Attribute.LABEL: label.format(account="alice")})) == []


def test_the_generation_is_one_private_data_object_beside_the_key(
    hsm: SoftHsm, provider: Pkcs11Provider, label: str
) -> None:
    for generation in (1, 2, 5, 3):
        provider.record_generation("alice", generation)
    with hsm.session() as session:
        kept = list(session.get_objects({Attribute.LABEL: label.format(account="alice")}))
        assert [data[Attribute.VALUE] for data in kept] == [b"5"]
        assert kept[0][Attribute.CLASS] == ObjectClass.DATA
        assert kept[0][Attribute.PRIVATE] is True
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.LABEL: label.format(account="alice"),
                Attribute.APPLICATION: _pkcs11_token.GENERATION_APPLICATION,
                Attribute.VALUE: b"-1",
            }
        )
    with pytest.raises(IntegrityError, match="does not hold a decimal number"):
        provider.recorded_generation("alice")


def test_an_older_key_record_is_refused_while_the_token_keeps_the_generation(
    hsm: SoftHsm, provider: Pkcs11Provider, tmp_path: Path
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    keys = _account(tmp_path, provider, events)
    keys.create()
    keys.ensure("files")
    backup = (keys.directory / "keys.json").read_bytes()
    keys.rotate("files")
    keys.lock()
    (keys.directory / "keys.json").write_bytes(backup)
    with pytest.raises(IntegrityError, match="older than provider 'hsm' last saw"):
        keys.unlock()
    failure = audited(events)
    assert failure
    assert (failure[-1].action, failure[-1].outcome) == ("key.unlock", "failure")


def test_an_hsm_unlock_is_audited_and_a_failure_names_its_cause(
    hsm: SoftHsm, label: str, tmp_path: Path
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with make(hsm, label) as provider:
        keys = _account(tmp_path, provider, events)
        keys.create()
        keys.lock()
        assert keys.unlock() == "hsm"
        keys.rewrap_for("hsm")  # keys rotate --provider hsm
        keys.close()
    assert ("strongroom_key_unlocked", {"account": "alice", "provider": "hsm"}) in events
    rewrapped = [event for event in audited(events) if event.action == "provider.rewrapped"]
    assert [event.details for event in rewrapped] == [{"provider": "hsm", "use": "pkcs11"}]
    events.clear()
    with make(hsm, label, card="pulled-out") as absent:
        keys = _account(tmp_path, absent, events)
        with pytest.raises(ProviderKeyLostError):
            keys.unlock()
    (event,) = audited(events)
    details = event.details
    assert (event.action, event.outcome) == ("key.unlock", "failure")
    assert details["error"] == "ProviderKeyLostError"
    assert "no token labelled 'pulled-out'" in details["reason"]
    assert hsm.pin not in repr(events)


def audited(events: list[tuple[str, dict[str, object]]]) -> list[AuditEvent]:
    found = [kwargs["event"] for hook, kwargs in events if hook == "strongroom_audit_event"]
    return [event for event in found if isinstance(event, AuditEvent)]


def _account(
    directory: Path, provider: Pkcs11Provider, events: list[tuple[str, dict[str, object]]]
) -> AccountKeys:
    return AccountKeys(
        account="alice",
        directory=directory / "alice",
        providers={"hsm": provider},
        provider_backends={"hsm": "pkcs11"},
        suite_for=suite_resolver(),
        default_suite="aes-256-gcm",
        notify=lambda hook, **kwargs: events.append((hook, kwargs)),
    )


# settings


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"library": "libsofthsm2.so", "token_label": "t"}, "library"),
        ({"library": "/l.so"}, "token_label"),
        ({"library": "/l.so", "token_label": "t", "key_label": "shared:labels"}, "{account}"),
        ({"library": "/l.so", "token_label": "t", "pin": "87654321"}, "secret reference"),
        ({"library": "/l.so", "token_label": "t", "mechanism": "aes-key-wrap"}, "mechanism"),
    ],
)
def test_settings_refuse_what_would_be_unsafe(table: dict[str, str], problem: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        Pkcs11Settings.from_table(table)
    assert problem in str(caught.value)
    assert "87654321" not in str(caught.value)


def test_every_error_is_one_strongroom_line(hsm: SoftHsm, label: str) -> None:
    """A PKCS#11 failure never leaks through as python-pkcs11's own exception."""
    with make(hsm, label) as provider:
        for blob in (b"SRHW\x01\x01" + bytes(40), b"nonsense", b""):
            with pytest.raises(StrongroomError) as caught:
                provider.unwrap(blob, CONTEXT)
            assert "\n" not in str(caught.value)
