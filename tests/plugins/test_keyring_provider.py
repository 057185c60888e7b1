"""The ``keyring`` key provider against a real gnome-keyring on a private D-Bus.

What the OS keyring holds is checked from outside with ``secret-tool``, and
the blob is opened with nothing but that key and the format documented in
:mod:`strongroom_plugins.providers.os_keyring`.  The blob format's tamper
checks run against an in-memory backend object, with no service at all.
"""

from __future__ import annotations

import base64
import gc
import os
import warnings
from collections.abc import Iterator
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

import keyring
import keyring.backend
import keyring.core
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null
from msgspec import ValidationError

from services import GnomeKeyring
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderUnreachableError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.testing import KeyProviderContract
from strongroom_plugins.providers.os_keyring import (
    KeyringSettings,
    OsKeyringProvider,
    generation_username,
    kek_username,
)

SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


@pytest.fixture(autouse=True)
def fresh_keyring_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make keyring choose its backend again, in this test's environment.

    keyring caches, for the life of the process, both its choice and the list of
    backends viable at the first look (``get_all_keyring`` runs once): a test
    without a bus would otherwise hide the secret service from every later test.
    Undoing the patches restores both.
    """
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.delattr(keyring.backend.get_all_keyring, "saved_result", raising=False)


class DictKeyring:
    """Duck-typed stand-in for a keyring backend, for tests with no service.

    Not a ``KeyringBackend`` subclass on purpose: keyring registers every
    subclass in a process-wide list it later chooses from.
    """

    def __init__(self, priority: float = 1.0) -> None:
        self.priority = priority
        self.items: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append("set")
        self.items[service, username] = password

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append("delete")
        del self.items[service, username]


def dict_provider(backend: DictKeyring) -> OsKeyringProvider:
    return OsKeyringProvider(backend=cast(KeyringBackend, backend))


# -- against gnome-keyring -----------------------------------------------------------------


def test_the_private_keyring_is_the_secret_service(gnome_keyring: GnomeKeyring) -> None:
    backend = keyring.get_keyring()
    assert isinstance(backend, SecretService.Keyring)
    assert backend.priority >= 1
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == gnome_keyring.env["DBUS_SESSION_BUS_ADDRESS"]


def test_wrap_unwrap_round_trip(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET
    kek = gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek")
    # A second wrap reuses the account's KEK; a fresh nonce makes another blob.
    again = provider.wrap(SECRET, CONTEXT)
    assert again != blob
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek") == kek
    # Another provider object (another process, in effect) unwraps both.
    assert OsKeyringProvider().unwrap(again, CONTEXT) == SECRET


def test_service_setting_names_the_keyring_items(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider(KeyringSettings(service="other-app"))
    blob = provider.wrap(SECRET, CONTEXT)
    assert gnome_keyring.secret_tool_lookup(service="other-app", username="alice:kek")
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek") is None
    assert provider.unwrap(blob, CONTEXT) == SECRET


@pytest.mark.parametrize(
    "other",
    [
        WrapContext("bob", "master", 1),
        WrapContext("alice", "files", 1),
        WrapContext("alice", "master", 2),
    ],
    ids=["account", "purpose", "version"],
)
def test_a_blob_does_not_unwrap_under_another_context(
    gnome_keyring: GnomeKeyring, other: WrapContext
) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    provider.wrap(b"bob's own key", WrapContext("bob", "master", 1))  # bob has a KEK too
    with pytest.raises(AuthenticationError):
        provider.unwrap(blob, other)


def test_an_account_without_a_kek_cannot_unwrap(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    with pytest.raises(KeyUnavailableError, match="no key-encryption key for 'carol'"):
        provider.unwrap(blob, WrapContext("carol", "master", 1))
    # Unwrapping never creates a KEK.
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="carol:kek") is None


def test_the_keyring_holds_a_kek_that_is_not_the_secret(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)

    stored = gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek")
    assert stored is not None
    kek = base64.b64decode(stored, validate=True)
    assert len(kek) == 32
    assert kek != SECRET
    assert SECRET not in stored
    assert base64.b64encode(SECRET) not in stored
    # The blob does not contain the secret, nor the KEK.
    assert SECRET not in blob
    assert kek not in blob
    # Only this one item was made, and it holds the KEK.
    listing = gnome_keyring.run("secret-tool", "search", "--all", "service", "strongroom")
    assert listing.returncode == 0
    assert listing.stdout.count(b"secret = ") == 1
    assert b"attribute.username = alice:kek" in listing.stderr  # attributes go to stderr

    # The documented format, implemented from the page: KEK from the keyring + blob.
    assert blob[:5] == b"SRKR\x01"
    nonce, sealed = blob[5:17], blob[17:]
    assert AESGCM(kek).decrypt(nonce, sealed, blob[:17] + CONTEXT.encode()) == SECRET


def test_destroy_removes_the_kek(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    bob_blob = provider.wrap(SECRET, WrapContext("bob", "master", 1))

    provider.destroy("alice")
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek") is None
    with pytest.raises(KeyUnavailableError, match="destroyed"):
        provider.unwrap(blob, CONTEXT)
    provider.destroy("alice")  # absent: nothing to do, no error
    # Other accounts are untouched.
    assert provider.unwrap(bob_blob, WrapContext("bob", "master", 1)) == SECRET
    # A new wrap makes a new KEK; the old blob stays unrecoverable (crypto-shredded).
    provider.wrap(SECRET, CONTEXT)
    with pytest.raises(AuthenticationError):
        provider.unwrap(blob, CONTEXT)


class TestOsKeyringProviderContract(KeyProviderContract):
    """The shared provider contract, on the real gnome-keyring."""

    @pytest.fixture
    def provider(self, gnome_keyring: GnomeKeyring) -> Iterator[KeyProvider]:
        with OsKeyringProvider() as provider:
            yield provider

    @pytest.fixture
    def foreign(self, gnome_keyring: GnomeKeyring) -> Iterator[KeyProvider]:
        """The same keyring under another service name: another KEK for alice."""
        with OsKeyringProvider(KeyringSettings(service="strongroom-foreign")) as foreign:
            yield foreign


GENERATION_ITEM = {"service": "strongroom", "username": "alice:generation"}


def test_the_generation_is_kept_in_its_own_item_and_only_rises(
    gnome_keyring: GnomeKeyring,
) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    kek = gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek")
    assert provider.recorded_generation("alice") is None
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) is None

    provider.record_generation("alice", 12)
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) == b"12"
    provider.record_generation("alice", 9)  # lower: the kept value stays
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) == b"12"
    assert OsKeyringProvider().recorded_generation("alice") == 12  # another process reads it
    provider.record_generation("alice", 13)
    assert OsKeyringProvider().recorded_generation("alice") == 13
    assert provider.recorded_generation("bob") is None
    # The KEK item is never rewritten: the blob still opens.
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek") == kek
    assert provider.unwrap(blob, CONTEXT) == SECRET
    listing = gnome_keyring.run("secret-tool", "search", "--all", "service", "strongroom")
    assert listing.stdout.count(b"secret = ") == 2
    assert generation_username("alice") == "alice:generation"


def test_the_generation_follows_the_service_setting(gnome_keyring: GnomeKeyring) -> None:
    OsKeyringProvider(KeyringSettings(service="other-app")).record_generation("alice", 4)
    assert gnome_keyring.secret_tool_lookup(service="other-app", username="alice:generation")
    assert OsKeyringProvider().recorded_generation("alice") is None


def test_destroy_erases_the_generation_after_the_kek(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    provider.wrap(SECRET, CONTEXT)
    provider.record_generation("alice", 5)
    provider.record_generation("bob", 6)
    provider.destroy("alice")
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek") is None
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) is None
    assert provider.recorded_generation("bob") == 6
    provider.destroy("alice")  # both absent: quiet


@pytest.mark.parametrize(
    "stored", ["x", "-1", "1.5", " 3", "3 ", "0x10", "\u0663", "9" * 20], ids=repr
)
def test_a_malformed_generation_is_an_integrity_error(
    gnome_keyring: GnomeKeyring, stored: str
) -> None:
    done = gnome_keyring.run(
        "secret-tool",
        "store",
        "--label=planted",
        "service",
        "strongroom",
        "username",
        "alice:generation",
        stdin=stored.encode(),
    )
    assert done.returncode == 0, done.stderr
    provider = OsKeyringProvider()
    with pytest.raises(
        IntegrityError, match="'alice:generation' does not hold a key-record"
    ) as caught:
        provider.recorded_generation("alice")
    assert "\n" not in str(caught.value)
    # Recording never overwrites what it cannot compare: fail closed.
    with pytest.raises(IntegrityError):
        provider.record_generation("alice", 10**6)
    assert gnome_keyring.secret_tool_lookup(**GENERATION_ITEM) == stored.encode()


def test_a_locked_keyring_raises_key_locked(gnome_keyring: GnomeKeyring) -> None:
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    provider.record_generation("alice", 1)
    gnome_keyring.lock()
    assert gnome_keyring.is_locked()

    # keyring's SecretService backend (25.7) leaves its D-Bus connection open when it
    # raises KeyringLocked.  Ignore the ResourceWarning and collect those sockets here,
    # not at some garbage collection in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for attempt in (
            lambda: provider.unwrap(blob, CONTEXT),
            lambda: provider.wrap(SECRET, CONTEXT),
            lambda: provider.destroy("alice"),
            lambda: provider.record_generation("alice", 2),
            lambda: provider.recorded_generation("alice"),
        ):
            with pytest.raises(KeyLockedError, match="locked; unlock it and retry") as caught:
                attempt()
            assert caught.value.exit_code == 4
        del caught
        gc.collect()


def test_chainer_is_reduced_to_its_best_backend(gnome_keyring: GnomeKeyring) -> None:
    keyring.set_keyring(chainer.ChainerBackend())
    provider = OsKeyringProvider()
    blob = provider.wrap(SECRET, CONTEXT)
    assert gnome_keyring.secret_tool_lookup(service="strongroom", username="alice:kek")
    assert provider.unwrap(blob, CONTEXT) == SECRET


# -- no usable keyring ---------------------------------------------------------------------


@pytest.fixture
def dead_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session bus address whose socket nobody listens on."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    socket = tmp_path / "no-bus"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={socket}")
    return socket


def test_no_dbus_session_is_unreachable(dead_bus: Path) -> None:
    provider = OsKeyringProvider()
    for attempt in (
        lambda: provider.wrap(SECRET, CONTEXT),
        lambda: provider.unwrap(b"SRKR\x01" + bytes(40), CONTEXT),
        lambda: provider.destroy("alice"),
        lambda: provider.record_generation("alice", 1),
        lambda: provider.recorded_generation("alice"),
    ):
        with pytest.raises(ProviderUnreachableError, match="no OS keyring service is reachable"):
            attempt()
    # keyring chose its fail keyring, which is refused by name, never used.
    with pytest.raises(
        ProviderUnreachableError, match=r"refusing keyring\.backends\.fail\.Keyring"
    ):
        provider.wrap(SECRET, CONTEXT)


def test_a_secret_service_backend_without_a_bus_is_unreachable(dead_bus: Path) -> None:
    provider = OsKeyringProvider(backend=SecretService.Keyring())
    with pytest.raises(ProviderUnreachableError, match=r"SecretService\.Keyring is unusable here"):
        provider.wrap(SECRET, CONTEXT)


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_keyring_backends_below_priority_one_are_refused(
    dead_bus: Path, backend: KeyringBackend
) -> None:
    keyring.set_keyring(backend)
    with pytest.raises(ProviderUnreachableError, match=type(backend).__module__) as caught:
        OsKeyringProvider().wrap(SECRET, CONTEXT)
    assert "refusing" in str(caught.value)
    assert caught.value.exit_code == 4


def test_a_plaintext_grade_backend_is_never_used() -> None:
    weak = DictKeyring(priority=0.5)  # what keyrings.alt's plaintext file keyring reports
    provider = dict_provider(weak)
    with pytest.raises(ProviderUnreachableError, match=r"DictKeyring \(priority 0.5"):
        provider.wrap(SECRET, CONTEXT)
    with pytest.raises(ProviderUnreachableError):
        provider.unwrap(b"SRKR\x01" + bytes(40), CONTEXT)
    with pytest.raises(ProviderUnreachableError):
        provider.destroy("alice")
    with pytest.raises(ProviderUnreachableError):
        provider.record_generation("alice", 1)
    with pytest.raises(ProviderUnreachableError):
        provider.recorded_generation("alice")
    assert weak.calls == []
    assert weak.items == {}


# -- no service: the blob format, errors and metadata --------------------------------------


@pytest.fixture
def memory_keyring() -> DictKeyring:
    return DictKeyring()


def test_every_flipped_byte_is_detected(memory_keyring: DictKeyring) -> None:
    provider = dict_provider(memory_keyring)
    blob = provider.wrap(SECRET, CONTEXT)
    assert len(blob) == 5 + 12 + len(SECRET) + 16
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        expected = IntegrityError if index < 5 else AuthenticationError
        with pytest.raises(expected):
            provider.unwrap(bytes(tampered), CONTEXT)
    for size in range(len(blob)):
        with pytest.raises(IntegrityError):
            provider.unwrap(blob[:size], CONTEXT)
    with pytest.raises(AuthenticationError):
        provider.unwrap(blob + b"\0", CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET


def test_foreign_blobs_are_integrity_errors(memory_keyring: DictKeyring) -> None:
    provider = dict_provider(memory_keyring)
    with pytest.raises(IntegrityError, match="unknown magic"):
        provider.unwrap(b"SRPW\x01" + bytes(60), CONTEXT)
    with pytest.raises(IntegrityError, match="version 2 is not supported"):
        provider.unwrap(b"SRKR\x02" + bytes(60), CONTEXT)
    assert memory_keyring.calls == []  # rejected before the keyring is asked


def test_a_kek_replaced_behind_its_back_fails_authentication(memory_keyring: DictKeyring) -> None:
    provider = dict_provider(memory_keyring)
    blob = provider.wrap(SECRET, CONTEXT)
    memory_keyring.items["strongroom", "alice:kek"] = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(AuthenticationError):
        provider.unwrap(blob, CONTEXT)


@pytest.mark.parametrize("stored", ["not base64!", base64.b64encode(bytes(16)).decode()])
def test_a_keyring_item_that_is_not_a_kek_is_an_integrity_error(
    memory_keyring: DictKeyring, stored: str
) -> None:
    memory_keyring.items["strongroom", "alice:kek"] = stored
    provider = dict_provider(memory_keyring)
    with pytest.raises(IntegrityError, match="does not hold a 32-byte base64 key") as caught:
        provider.wrap(SECRET, CONTEXT)
    assert stored not in str(caught.value)


def test_library_errors_are_translated() -> None:
    from keyring.errors import InitError, KeyringLocked, PasswordSetError

    class Failing(DictKeyring):
        def __init__(self, error: Exception) -> None:
            super().__init__()
            self.error = error

        def get_password(self, service: str, username: str) -> str | None:
            raise self.error

    cases: list[tuple[Exception, type[Exception], str]] = [
        (KeyringLocked("x"), KeyLockedError, "locked"),
        (InitError("x"), ProviderUnreachableError, "no OS keyring service is reachable"),
        (ConnectionRefusedError(), ProviderUnreachableError, "no OS keyring service"),
        (PasswordSetError("x"), ProviderUnreachableError, "failed: PasswordSetError"),
        (RuntimeError("dbus"), ProviderUnreachableError, "failed: RuntimeError"),
    ]
    for error, expected, message in cases:
        provider = dict_provider(Failing(error))
        for call in (
            partial(provider.unwrap, b"SRKR\x01" + bytes(40), CONTEXT),
            partial(provider.record_generation, "alice", 1),
            partial(provider.recorded_generation, "alice"),
        ):
            with pytest.raises(expected, match=message) as caught:
                call()
            assert caught.value.__cause__ is error


def test_a_generation_the_backend_did_not_keep_is_unreachable() -> None:
    class Forgetful(DictKeyring):
        def set_password(self, service: str, username: str, password: str) -> None:
            self.calls.append("set")  # says yes, keeps nothing

    with pytest.raises(ProviderUnreachableError, match="did not keep the key-record generation"):
        dict_provider(Forgetful()).record_generation("alice", 3)


def test_destroy_of_an_absent_kek_is_quiet() -> None:
    from keyring.errors import PasswordDeleteError

    class Keyringish(DictKeyring):
        def delete_password(self, service: str, username: str) -> None:
            raise PasswordDeleteError("No such password!")

    dict_provider(Keyringish()).destroy("nobody")
    present = Keyringish()
    present.items["strongroom", "alice:kek"] = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ProviderUnreachableError, match="PasswordDeleteError"):
        dict_provider(present).destroy("alice")


def test_settings_traits_and_repr() -> None:
    assert KeyringSettings().service == "strongroom"
    with pytest.raises(ValidationError):
        KeyringSettings(service="")
    with pytest.raises(ValidationError):
        KeyringSettings.from_table({"servce": "x"})
    traits = OsKeyringProvider.traits
    assert not traits.non_exportable_root
    assert not traits.needs_user_presence
    assert not traits.survives_reinstall
    assert repr(OsKeyringProvider()) == "<OsKeyringProvider service='strongroom'>"
    assert kek_username("alice") == "alice:kek"
    assert not issubclass(ProviderUnreachableError, UnlockFailedError)


def test_registered_under_its_entry_point_with_the_keyring_extra() -> None:
    (entry,) = entry_points(group="strongroom.key_providers", name="keyring")
    assert entry.extras == ["keyring"]
    assert entry.load() is OsKeyringProvider
