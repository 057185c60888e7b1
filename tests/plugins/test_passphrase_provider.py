"""The ``passphrase`` key provider: sources, the wrap format, and what never leaks.

Passphrases come through the real environment variables (real files, real
commands), an injected callable, and ``getpass`` on a real pseudo-terminal.
Most tests use the smallest Argon2id cost the settings accept, for speed;
one runs the defaults.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import struct
import sys
import unicodedata
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from msgspec import ValidationError

from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    SecretSourceError,
    StrongroomError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.settings import SecretRef
from strongroom.testing import KeyProviderContract
from strongroom_plugins.providers import passphrase as passphrase_module
from strongroom_plugins.providers.passphrase import (
    COMMAND_VARIABLE,
    FILE_VARIABLE,
    NEW_COMMAND_VARIABLE,
    NEW_FILE_VARIABLE,
    PassphraseProvider,
    PassphraseRequest,
    PassphraseSettings,
)
from terminal import on_a_terminal

SMALL = PassphraseSettings(memory_kib=19456, iterations=2, lanes=1)
SECRET = b"\x00master key bytes\xff"
CONTEXT = WrapContext("alice", "master", 1)
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - the test passphrase
NEW_PASSPHRASE = "a new horse for a new stable"  # noqa: S105
VARIABLES = (FILE_VARIABLE, COMMAND_VARIABLE, NEW_FILE_VARIABLE, NEW_COMMAND_VARIABLE)


@pytest.fixture(autouse=True)
def no_passphrase_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def fixed(
    passphrase: str | bytes, calls: list[PassphraseRequest] | None = None
) -> Callable[[PassphraseRequest], str | bytes]:
    def source(request: PassphraseRequest) -> str | bytes:
        if calls is not None:
            calls.append(request)
        return passphrase

    return source


def private_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def error_text(error: BaseException) -> str:
    """Everything an error shows or carries: message, repr, and its whole chain."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# -- sources -------------------------------------------------------------------------------


def test_round_trip_through_a_passphrase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = private_file(tmp_path / "passphrase", PASSPHRASE.encode() + b"\n")
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    provider = PassphraseProvider(SMALL)
    blob = provider.wrap(SECRET, CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET
    # One trailing newline is not part of the passphrase: the same text typed opens it.
    assert PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(blob, CONTEXT) == SECRET


def test_round_trip_through_a_passphrase_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "ask pass.py"  # a space: the command line is split, never run by a shell
    script.write_text(f"print({PASSPHRASE!r})\n")
    monkeypatch.setenv(COMMAND_VARIABLE, shlex.join([sys.executable, str(script)]))
    provider = PassphraseProvider(SMALL)
    blob = provider.wrap(SECRET, CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET
    assert PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(blob, CONTEXT) == SECRET


def test_the_file_comes_before_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = private_file(tmp_path / "passphrase", PASSPHRASE.encode())
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    monkeypatch.setenv(COMMAND_VARIABLE, str(shutil.which("false")))  # would fail if run
    provider = PassphraseProvider(SMALL)
    assert provider.unwrap(provider.wrap(SECRET, CONTEXT), CONTEXT) == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_passphrase_file_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    path = private_file(tmp_path / "passphrase", PASSPHRASE.encode(), mode)
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    with pytest.raises(SecretSourceError, match=rf"^{FILE_VARIABLE}: .*chmod 600") as caught:
        PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)
    assert PASSPHRASE not in error_text(caught.value)


def test_a_missing_file_and_a_failing_command_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FILE_VARIABLE, str(tmp_path / "absent"))
    with pytest.raises(KeyLockedError, match=rf"^{FILE_VARIABLE}: .*does not exist"):
        PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)
    monkeypatch.delenv(FILE_VARIABLE)
    monkeypatch.setenv(COMMAND_VARIABLE, str(shutil.which("false")))
    with pytest.raises(SecretSourceError, match=rf"^{COMMAND_VARIABLE}: .*exited with status 1"):
        PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)


@pytest.mark.parametrize("blank", ["", "  "])
def test_without_a_source_or_terminal_the_key_stays_locked(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv(FILE_VARIABLE, blank)  # blank counts as unset
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSPHRASE))  # not a TTY: never read
    provider = PassphraseProvider(SMALL)
    blob = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).wrap(SECRET, CONTEXT)
    for attempt in (lambda: provider.wrap(SECRET, CONTEXT), lambda: provider.unwrap(blob, CONTEXT)):
        with pytest.raises(KeyLockedError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message
        assert FILE_VARIABLE in message
        assert COMMAND_VARIABLE in message
        assert caught.value.exit_code == 4


def test_an_injected_source_is_asked_once_per_operation() -> None:
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE.encode(), calls))
    blob = provider.wrap(SECRET, CONTEXT)
    assert provider.unwrap(blob, CONTEXT) == SECRET
    assert calls == [PassphraseRequest(CONTEXT, new=True), PassphraseRequest(CONTEXT, new=False)]


def test_text_is_normalised_so_every_source_derives_the_same_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "Crème brûlée à l'œil"
    decomposed = unicodedata.normalize("NFD", text)
    assert decomposed != text
    blob = PassphraseProvider(SMALL, passphrase=fixed(decomposed)).wrap(SECRET, CONTEXT)
    path = private_file(tmp_path / "passphrase", unicodedata.normalize("NFC", text).encode())
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    assert PassphraseProvider(SMALL).unwrap(blob, CONTEXT) == SECRET


def test_an_empty_passphrase_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnlockFailedError, match="empty passphrase"):
        PassphraseProvider(SMALL, passphrase=fixed("")).wrap(SECRET, CONTEXT)
    monkeypatch.setenv(FILE_VARIABLE, str(private_file(tmp_path / "empty", b"\n")))
    with pytest.raises(UnlockFailedError, match="empty passphrase"):
        PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)


@pytest.mark.parametrize(
    ("content", "passphrase"),
    [
        (b"pass word\r\n", "pass word"),  # saved on Windows
        (b"pass word\n", "pass word"),
        (b"pass word", "pass word"),
        (b" pass word \r\n", " pass word "),  # other whitespace is part of it
        (b"pass word\t\n", "pass word\t"),
        (b"pass word\r", "pass word\r"),  # a lone CR is not a line ending
        (b"pass word\r\n\r\n", "pass word\r\n"),  # exactly one line ending goes
        (b"pass word\n\n", "pass word\n"),
    ],
    ids=["crlf", "lf", "none", "spaces", "tab", "cr", "two-crlf", "two-lf"],
)
def test_a_file_loses_exactly_one_line_ending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, passphrase: str
) -> None:
    monkeypatch.setenv(FILE_VARIABLE, str(private_file(tmp_path / "passphrase", content)))
    blob = PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)
    assert PassphraseProvider(SMALL, passphrase=fixed(passphrase)).unwrap(blob, CONTEXT) == SECRET


def test_a_command_printing_crlf_gives_the_same_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "crlf.py"
    script.write_text(f"import sys; sys.stdout.buffer.write({PASSPHRASE.encode()!r} + b'\\r\\n')\n")
    monkeypatch.setenv(COMMAND_VARIABLE, shlex.join([sys.executable, str(script)]))
    blob = PassphraseProvider(SMALL).wrap(SECRET, CONTEXT)
    assert PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(blob, CONTEXT) == SECRET


# -- changing the passphrase -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["file", "command"])
def test_a_change_reads_the_new_passphrase_from_its_own_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setenv(FILE_VARIABLE, str(private_file(tmp_path / "old", PASSPHRASE.encode())))
    if scheme == "file":
        new = private_file(tmp_path / "new", NEW_PASSPHRASE.encode() + b"\r\n")
        monkeypatch.setenv(NEW_FILE_VARIABLE, str(new))
    else:
        script = tmp_path / "new.py"
        script.write_text(f"print({NEW_PASSPHRASE!r})\n")
        monkeypatch.setenv(NEW_COMMAND_VARIABLE, shlex.join([sys.executable, str(script)]))
    provider = PassphraseProvider(SMALL)
    old_blob = provider.wrap(SECRET, CONTEXT)  # a wrap that is not a change: the old one
    assert provider.unwrap(old_blob, CONTEXT) == SECRET  # the old one still unlocks meanwhile

    new_blob = provider.rewrap(SECRET, CONTEXT)
    typed_new = PassphraseProvider(SMALL, passphrase=fixed(NEW_PASSPHRASE))
    assert typed_new.unwrap(new_blob, CONTEXT) == SECRET
    with pytest.raises(UnlockFailedError, match="wrong passphrase"):
        PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(new_blob, CONTEXT)
    with pytest.raises(UnlockFailedError, match="wrong passphrase"):
        typed_new.unwrap(old_blob, CONTEXT)


def test_a_change_without_a_new_passphrase_is_refused_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = private_file(tmp_path / "old", PASSPHRASE.encode())
    monkeypatch.setenv(FILE_VARIABLE, str(old))
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSPHRASE))  # not a TTY: never read
    configured = PassphraseSettings(
        memory_kib=19456, iterations=2, lanes=1, passphrase=SecretRef("file", str(old))
    )
    # The current passphrase is at hand from the variable or the setting; neither is taken.
    for provider in (PassphraseProvider(SMALL), PassphraseProvider(configured)):
        with pytest.raises(KeyLockedError) as caught:
            provider.rewrap(SECRET, CONTEXT)
        assert str(caught.value) == (
            f"no new passphrase available: set {NEW_FILE_VARIABLE} or {NEW_COMMAND_VARIABLE}, "
            "or run on a terminal to be asked; the passphrase was not changed"
        )
        assert caught.value.exit_code == 4


def test_the_new_passphrase_setting_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = private_file(tmp_path / "new", NEW_PASSPHRASE.encode())
    elsewhere = private_file(tmp_path / "elsewhere", b"from the environment")
    monkeypatch.setenv(NEW_FILE_VARIABLE, str(elsewhere))
    settings = PassphraseSettings(
        memory_kib=19456, iterations=2, lanes=1, new_passphrase=SecretRef("file", str(new))
    )
    blob = PassphraseProvider(settings).rewrap(SECRET, CONTEXT)
    typed_new = PassphraseProvider(SMALL, passphrase=fixed(NEW_PASSPHRASE))
    assert typed_new.unwrap(blob, CONTEXT) == SECRET
    with pytest.raises(ValidationError):  # a literal is refused like any secret setting
        PassphraseSettings.from_table({"new_passphrase": NEW_PASSPHRASE})


def test_an_injected_source_is_told_it_is_a_change() -> None:
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(NEW_PASSPHRASE, calls))
    provider.rewrap(SECRET, CONTEXT)
    assert calls == [PassphraseRequest(CONTEXT, new=True, change=True)]
    with pytest.raises(UnlockFailedError, match="empty passphrase"):
        PassphraseProvider(SMALL, passphrase=fixed("")).rewrap(SECRET, CONTEXT)


def test_a_bad_new_passphrase_file_is_refused_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = private_file(tmp_path / "new", NEW_PASSPHRASE.encode(), 0o644)
    monkeypatch.setenv(NEW_FILE_VARIABLE, str(path))
    with pytest.raises(SecretSourceError, match=rf"^{NEW_FILE_VARIABLE}: .*chmod 600") as caught:
        PassphraseProvider(SMALL).rewrap(SECRET, CONTEXT)
    assert NEW_PASSPHRASE not in error_text(caught.value)


class TestPassphraseProviderContract(KeyProviderContract):
    """The shared provider contract; a passphrase has no root to erase and keeps no state."""

    refusal = UnlockFailedError  # a wrong passphrase and an altered blob look alike
    destroys_root = False
    keeps_generation = False

    def make_provider(self) -> KeyProvider:
        return PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE))

    def make_foreign_provider(self) -> KeyProvider:
        return PassphraseProvider(SMALL, passphrase=fixed("another passphrase entirely"))


# -- the terminal ----------------------------------------------------------------------------

CHILD = r"""
import fcntl, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes our terminal: getpass opens /dev/tty
from strongroom.errors import StrongroomError
from strongroom.key_provider import WrapContext
from strongroom_plugins.providers.passphrase import PassphraseProvider, PassphraseSettings

provider = PassphraseProvider(PassphraseSettings(memory_kib=19456, iterations=2, lanes=1))
context = WrapContext("alice", "master", 1)
blob = provider.wrap(b"pty secret", context)
print("UNWRAPPED", provider.unwrap(blob, context).decode(), flush=True)
try:
    provider.wrap(b"other", context)
except StrongroomError as exc:
    print("REFUSED", type(exc).__name__, exc, flush=True)
"""


def test_the_terminal_prompt_asks_twice_for_a_new_wrap_without_echo() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {FILE_VARIABLE, COMMAND_VARIABLE}}
    with on_a_terminal([sys.executable, "-c", CHILD], env) as (child, terminal):
        terminal.expect(b"Passphrase for 'alice' (master): ")
        terminal.type("typed secretly 1")
        terminal.expect(b"Repeat the passphrase: ")
        terminal.type("typed secretly 1")
        terminal.expect(b"Passphrase for 'alice' (master): ")  # unwrap asks once
        terminal.type("typed secretly 1")
        terminal.expect(b"UNWRAPPED pty secret")
        terminal.expect(b"Passphrase for 'alice' (master): ")
        terminal.type("typed secretly 2")
        terminal.expect(b"Repeat the passphrase: ")
        terminal.type("typed secretly 3")
        terminal.expect(b"REFUSED UnlockFailedError the two passphrases typed differ")
        assert child.wait(timeout=30) == 0
    assert b"typed secretly" not in terminal.transcript  # echo was off


CHANGE_CHILD = r"""
import fcntl, os, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
from strongroom.key_provider import WrapContext
from strongroom_plugins.providers.passphrase import PassphraseProvider, PassphraseSettings

provider = PassphraseProvider(PassphraseSettings(memory_kib=19456, iterations=2, lanes=1))
context = WrapContext("alice", "master", 1)
blob = provider.rewrap(b"pty secret", context)
os.environ["STRONGROOM_PASSPHRASE_FILE"] = sys.argv[1]  # unwrap with the file, not the terminal
print("UNWRAPPED", provider.unwrap(blob, context).decode(), flush=True)
"""


def test_the_terminal_asks_twice_for_a_new_passphrase(tmp_path: Path) -> None:
    typed = private_file(tmp_path / "typed", b"typed secretly 4")
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env[FILE_VARIABLE] = str(private_file(tmp_path / "old", PASSPHRASE.encode()))
    argv = [sys.executable, "-c", CHANGE_CHILD, str(typed)]
    with on_a_terminal(argv, env) as (child, terminal):
        # The current passphrase's variable is set, but a change never takes it.
        terminal.expect(b"New passphrase for 'alice' (master): ")
        terminal.type("typed secretly 4")
        terminal.expect(b"Repeat the passphrase: ")
        terminal.type("typed secretly 4")
        terminal.expect(b"UNWRAPPED pty secret")
        assert child.wait(timeout=30) == 0
    assert b"typed secretly" not in terminal.transcript


# -- the wrap --------------------------------------------------------------------------------


def header(blob: bytes) -> tuple[bytes, int, int, int, int, bytes, bytes]:
    magic, version, memory, iterations, lanes = struct.unpack_from(">4sBIII", blob)
    return magic, version, memory, iterations, lanes, blob[17:33], blob[33:45]


def test_the_blob_layout_is_as_documented() -> None:
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE))
    blob = provider.wrap(SECRET, CONTEXT)
    magic, version, memory, iterations, lanes, salt, nonce = header(blob)
    assert (magic, version, memory, iterations, lanes) == (b"SRPW", 1, 19456, 2, 1)
    assert len(blob) == 45 + len(SECRET) + 16
    assert SECRET not in blob
    # Implemented from the docstring alone.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kek = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456).derive(
        PASSPHRASE.encode()
    )
    assert AESGCM(kek).decrypt(nonce, blob[45:], blob[:45] + CONTEXT.encode()) == SECRET
    # Fresh salt and nonce every time.
    again = provider.wrap(SECRET, CONTEXT)
    assert header(again)[5:] != header(blob)[5:]


def test_the_parameters_travel_with_the_blob() -> None:
    old = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).wrap(SECRET, CONTEXT)
    stronger = PassphraseSettings(memory_kib=24576, iterations=3, lanes=2)
    provider = PassphraseProvider(stronger, passphrase=fixed(PASSPHRASE))
    assert provider.unwrap(old, CONTEXT) == SECRET
    new = provider.wrap(SECRET, CONTEXT)
    assert header(new)[2:5] == (24576, 3, 2)
    assert PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(new, CONTEXT) == SECRET


def test_the_default_parameters() -> None:
    settings = PassphraseSettings()
    assert (settings.memory_kib, settings.iterations, settings.lanes) == (65536, 3, 4)
    provider = PassphraseProvider(passphrase=fixed(PASSPHRASE))
    blob = provider.wrap(SECRET, CONTEXT)
    assert header(blob)[2:5] == (65536, 3, 4)
    assert provider.unwrap(blob, CONTEXT) == SECRET


@pytest.mark.parametrize(
    "values",
    [
        {"memory_kib": 19455},
        {"memory_kib": 4 * 1024 * 1024 + 1},
        {"iterations": 1},
        {"iterations": 65},
        {"lanes": 0},
        {"lanes": 256},
        {"memory_kib": "a lot"},
        {"salt": "fixed"},
    ],
)
def test_settings_refuse_weak_or_unknown_values(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PassphraseSettings.from_table(values)


def test_a_wrong_passphrase_is_an_unlock_failure() -> None:
    blob = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).wrap(SECRET, CONTEXT)
    wrong = "correct horse battery stapler"
    with pytest.raises(UnlockFailedError) as caught:
        PassphraseProvider(SMALL, passphrase=fixed(wrong)).unwrap(blob, CONTEXT)
    assert caught.value.exit_code == 4
    assert str(caught.value) == "wrong passphrase for 'alice', or the wrapped key was altered"
    text = error_text(caught.value)
    assert PASSPHRASE not in text
    assert wrong not in text


@pytest.mark.parametrize(
    "other",
    [
        WrapContext("bob", "master", 1),
        WrapContext("alice", "files", 1),
        WrapContext("alice", "master", 2),
    ],
    ids=["account", "purpose", "version"],
)
def test_a_blob_does_not_unwrap_under_another_context(other: WrapContext) -> None:
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE))
    blob = provider.wrap(SECRET, CONTEXT)
    with pytest.raises(UnlockFailedError, match="or the wrapped key was altered"):
        provider.unwrap(blob, other)


def test_every_header_byte_and_the_sealed_part_are_authenticated() -> None:
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE, calls))
    blob = provider.wrap(b"8 bytes!", CONTEXT)
    positions = [*range(45), 45, len(blob) - 17, len(blob) - 1]  # header, nonce; ciphertext; tag
    for index in positions:
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        calls.clear()
        with pytest.raises((IntegrityError, UnlockFailedError)) as caught:
            provider.unwrap(bytes(tampered), CONTEXT)
        if index < 5:  # magic and version: refused before anyone is asked
            assert isinstance(caught.value, IntegrityError)
            assert calls == []
    assert provider.unwrap(blob, CONTEXT) == b"8 bytes!"


def test_foreign_and_truncated_blobs_are_integrity_errors() -> None:
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE, calls))
    blob = provider.wrap(SECRET, CONTEXT)
    calls.clear()
    with pytest.raises(IntegrityError, match="unknown magic"):
        provider.unwrap(b"SRKR\x01" + bytes(60), CONTEXT)
    with pytest.raises(IntegrityError, match="version 9 is not supported"):
        provider.unwrap(b"SRPW\x09" + blob[5:], CONTEXT)
    for size in (0, 3, 5, 33, 45, 45 + 15):
        with pytest.raises(IntegrityError):
            provider.unwrap(blob[:size], CONTEXT)
    huge = blob[:5] + struct.pack(">I", 0xFFFFFFFF) + blob[9:]
    with pytest.raises(IntegrityError, match="outside the accepted range"):
        provider.unwrap(huge, CONTEXT)
    assert calls == []


def hand_made_wrap(memory_kib: int, iterations: int, lanes: int) -> bytes:
    """A wrap of ``SECRET`` built from docs/formats.md alone: authentic whatever its parameters."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    prefix = b"SRPW\x01" + struct.pack(">III", memory_kib, iterations, lanes) + os.urandom(16)
    nonce = os.urandom(12)
    kek = Argon2id(
        salt=prefix[17:], length=32, iterations=iterations, lanes=lanes, memory_cost=memory_kib
    ).derive(PASSPHRASE.encode())
    return prefix + nonce + AESGCM(kek).encrypt(nonce, SECRET, prefix + nonce + CONTEXT.encode())


@pytest.mark.parametrize(
    ("memory_kib", "iterations", "lanes"),
    [(19455, 2, 1), (19456, 1, 1), (8, 1, 1)],
    ids=["memory", "iterations", "both"],
)
def test_a_stored_wrap_below_the_floor_is_refused_before_argon2_runs(
    memory_kib: int, iterations: int, lanes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weak wrap written by someone else, correctly authenticated, is still refused on read."""
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE, calls))
    assert provider.unwrap(hand_made_wrap(19456, 2, 1), CONTEXT) == SECRET  # the floor opens
    weak = hand_made_wrap(memory_kib, iterations, lanes)
    calls.clear()

    def no_argon2(*args: object) -> bytearray:
        raise AssertionError("Argon2id ran on parameters below the floor")

    monkeypatch.setattr(passphrase_module, "_derive", no_argon2)
    with pytest.raises(IntegrityError) as caught:
        provider.unwrap(weak, CONTEXT)
    assert str(caught.value) == (
        "the passphrase-wrapped key names Argon2id parameters outside the accepted range"
    )
    assert calls == []  # refused before anyone is asked for the passphrase


# -- what is kept, and what never leaks -----------------------------------------------------


def test_the_derived_key_is_wiped_after_use(monkeypatch: pytest.MonkeyPatch) -> None:
    derived: list[bytearray] = []
    real = passphrase_module._derive

    def spy(*args: bytes | int) -> bytearray:
        kek = real(*args)  # type: ignore[arg-type]
        derived.append(kek)
        return kek

    monkeypatch.setattr(passphrase_module, "_derive", spy)
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE))
    blob = provider.wrap(SECRET, CONTEXT)
    provider.unwrap(blob, CONTEXT)
    with pytest.raises(UnlockFailedError):
        PassphraseProvider(SMALL, passphrase=fixed("wrong")).unwrap(blob, CONTEXT)
    assert len(derived) == 3
    assert all(kek == bytes(32) for kek in derived)


def test_nothing_is_written_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    places = [tmp_path / name for name in ("home", "cwd", "tmp")]
    for place in places:
        place.mkdir()
    monkeypatch.setenv("HOME", str(places[0]))
    monkeypatch.chdir(places[1])
    monkeypatch.setenv("TMPDIR", str(places[2]))
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE))
    provider.unwrap(provider.wrap(SECRET, CONTEXT), CONTEXT)
    assert [list(place.iterdir()) for place in places] == [[], [], []]


def test_repr_and_state_hold_no_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FILE_VARIABLE, str(private_file(tmp_path / "p", PASSPHRASE.encode())))
    provider = PassphraseProvider(SMALL)
    provider.unwrap(provider.wrap(SECRET, CONTEXT), CONTEXT)
    assert repr(provider) == (
        "<PassphraseProvider argon2id memory_kib=19456 iterations=2 lanes=1, "
        "passphrase from environment or terminal>"
    )
    state = repr(vars(provider))
    assert PASSPHRASE not in state
    assert "caller" in repr(PassphraseProvider(passphrase=fixed(PASSPHRASE)))
    configured = PassphraseSettings(passphrase=SecretRef("file", str(tmp_path / "p")))
    assert repr(PassphraseProvider(configured)).endswith(f"passphrase from file:{tmp_path}/p>")
    assert PASSPHRASE not in repr(PassphraseProvider(passphrase=fixed(PASSPHRASE)))


def test_the_passphrase_never_appears_in_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).wrap(SECRET, CONTEXT)
    errors: list[StrongroomError] = []
    for attempt in (
        lambda: PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE + "!")).unwrap(blob, CONTEXT),
        lambda: PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(blob[:-1], CONTEXT),
        lambda: PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE)).unwrap(
            blob, WrapContext("bob", "master", 1)
        ),
    ):
        with pytest.raises(StrongroomError) as caught:
            attempt()
        errors.append(caught.value)
    monkeypatch.setenv(FILE_VARIABLE, str(private_file(tmp_path / "p", PASSPHRASE.encode(), 0o644)))
    with pytest.raises(StrongroomError) as caught:
        PassphraseProvider(SMALL).unwrap(blob, CONTEXT)
    errors.append(caught.value)
    for error in errors:
        assert PASSPHRASE not in error_text(error)


# -- metadata --------------------------------------------------------------------------------


def test_traits() -> None:
    traits = PassphraseProvider.traits
    assert not traits.non_exportable_root
    assert traits.needs_user_presence
    assert traits.survives_reinstall


def test_registered_under_its_entry_point_without_an_extra() -> None:
    (entry,) = entry_points(group="strongroom.key_providers", name="passphrase")
    assert entry.extras == []
    assert entry.load() is PassphraseProvider


def test_renew_refuses_a_malformed_blob_before_asking() -> None:
    calls: list[PassphraseRequest] = []
    provider = PassphraseProvider(SMALL, passphrase=fixed(PASSPHRASE, calls))
    with pytest.raises(IntegrityError):
        provider.renew(SECRET, CONTEXT, previous=b"garbage" * 10, previous_context=CONTEXT)
    assert calls == []


def test_a_passphrase_from_non_utf8_environment_bytes_round_trips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POSIX hands such bytes over as surrogates; they are the passphrase, as given."""
    monkeypatch.setenv("STRONGROOM_TEST_PW", os.fsdecode(b"caf\xe9 secret"))
    provider = PassphraseProvider(
        PassphraseSettings(
            memory_kib=19456,
            iterations=2,
            lanes=1,
            passphrase=SecretRef("env", "STRONGROOM_TEST_PW"),
        )
    )
    blob = provider.wrap(SECRET, CONTEXT)
    assert PassphraseProvider(SMALL, passphrase=fixed(b"caf\xe9 secret")).unwrap(blob, CONTEXT) == (
        SECRET
    )
