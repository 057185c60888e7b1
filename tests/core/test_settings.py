"""``SecretRef`` parsing and resolution, and the ``BackendSettings`` base model."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest
from msgspec import Meta, ValidationError

from strongroom.config import BackendChoice, parse_config
from strongroom.errors import ConfigError, KeyLockedError, SecretSourceError
from strongroom.settings import BackendSettings, NoSettings, SecretRef

LITERAL = "hunter2-literal"


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


class VaultSettings(BackendSettings, frozen=True, kw_only=True):
    url: str
    passphrase: SecretRef
    token: SecretRef | None = None
    retries: Annotated[int, Meta(ge=0, le=5, description="attempts after the first")] = 1
    verify: bool = True
    mode: Mode = Mode.SAFE
    level: Literal["low", "high"] | None = None


def vault(**values: object) -> VaultSettings:
    """A valid ``VaultSettings``, with ``values`` replacing the defaults."""
    return VaultSettings.from_table({"url": "u", "passphrase": "env:X", **values})


def _secret_file(tmp_path: Path, content: bytes, mode: int) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _source_error(ref: SecretRef) -> SecretSourceError:
    with pytest.raises(SecretSourceError) as caught:
        ref.resolve()
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    return caught.value


# --- parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "target"),
    [
        ("env:STRONGROOM_TEST_SECRET", "env", "STRONGROOM_TEST_SECRET"),
        ("file:/run/secrets/db", "file", "/run/secrets/db"),
        ("file:~/.config/strongroom/key", "file", "~/.config/strongroom/key"),
        ("command:pass show strongroom", "command", "pass show strongroom"),
        ("env: PADDED ", "env", "PADDED"),
        ("command:printf a:b", "command", "printf a:b"),
    ],
)
def test_parse_accepts_each_scheme(text: str, scheme: str, target: str) -> None:
    ref = SecretRef.parse(text)
    assert (ref.scheme, ref.target) == (scheme, target)


@pytest.mark.parametrize(
    "text",
    [LITERAL, "", "env:", "env:   ", "file:", "command:", "ftp:hunter2-literal", "ENV:X", " env:X"],
)
def test_parse_refuses_anything_but_a_reference(text: str) -> None:
    with pytest.raises(ValueError, match="expected a secret reference") as caught:
        SecretRef.parse(text)
    message = str(caught.value)
    assert "secrets never sit in the config file" in message
    assert "hunter2" not in message
    assert "ENV:X" not in message


def test_constructor_refuses_unknown_scheme_or_empty_target() -> None:
    with pytest.raises(ValueError, match="unsupported secret reference scheme"):
        SecretRef("ftp", "x")
    with pytest.raises(ValueError, match="unsupported secret reference scheme"):
        SecretRef("env", "")


# --- resolving ---------------------------------------------------------------


def test_env_resolves_with_one_trailing_newline_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_TEST_SECRET", "s3cret\n\n")
    assert SecretRef.parse("env:STRONGROOM_TEST_SECRET").resolve() == b"s3cret\n"


def test_env_empty_value_is_an_empty_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_TEST_SECRET", "")
    assert SecretRef.parse("env:STRONGROOM_TEST_SECRET").resolve() == b""


def test_env_unset_names_the_variable_and_is_a_key_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret to be had now is a key that is unavailable (exit 4), not a config error."""
    monkeypatch.delenv("STRONGROOM_TEST_SECRET", raising=False)
    with pytest.raises(KeyLockedError) as caught:
        SecretRef.parse("env:STRONGROOM_TEST_SECRET").resolve()
    assert str(caught.value) == "env:STRONGROOM_TEST_SECRET: environment variable is not set"
    assert caught.value.exit_code == 4


def test_env_reads_the_mapping_the_config_was_parsed_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APP_SECRET", raising=False)
    config = parse_config(
        {"stores": {"notes": {"use": "files"}}}, source="app", environ={"APP_SECRET": "s3cret"}
    )
    choice = BackendChoice(
        table="x",
        slot="stores",
        use="fake",
        settings={"url": "https://vault", "passphrase": "env:APP_SECRET"},
        origins={"url": "app", "passphrase": "app"},
        environ=config.choice("stores.notes").environ,
    )
    ref = choice.validate(VaultSettings).passphrase
    assert ref is not None
    assert ref.resolve() == b"s3cret"  # not in os.environ: from the mapping given


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_resolves_with_one_trailing_newline_removed(tmp_path: Path, mode: int) -> None:
    path = _secret_file(tmp_path, b"s3cret\n\n", mode)
    assert SecretRef.parse(f"file:{path}").resolve() == b"s3cret\n"


def test_file_without_trailing_newline_is_returned_whole(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, b"\x00binary\xff", 0o600)
    assert SecretRef.parse(f"file:{path}").resolve() == b"\x00binary\xff"


def test_file_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _secret_file(tmp_path, b"s3cret\n", 0o600)
    assert SecretRef.parse("file:~/secret").resolve() == b"s3cret"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _secret_file(tmp_path, b"VALUE-SHOULD-NOT-LEAK", mode)
    error = _source_error(SecretRef.parse(f"file:{path}"))
    assert str(error) == f"file:{path}: file is accessible to group or others; chmod 600 it"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Mode 0600 is not enough: the owner could rewrite the secret, so it must be ours."""
    path = _secret_file(tmp_path, b"VALUE-SHOULD-NOT-LEAK", 0o600)
    os.chown(path, 65534, 65534)  # nobody
    error = _source_error(SecretRef.parse(f"file:{path}"))
    assert str(error) == f"file:{path}: file is not owned by the current user"
    os.chown(path, os.geteuid(), os.getegid())
    assert SecretRef.parse(f"file:{path}").resolve() == b"VALUE-SHOULD-NOT-LEAK"


def test_missing_file_names_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(KeyLockedError) as caught:
        SecretRef.parse(f"file:{path}").resolve()
    assert str(caught.value) == f"file:{path}: file does not exist"


def test_directory_is_a_secret_source_error(tmp_path: Path) -> None:
    """Any OS error reading the file is reported as the reference, not raised raw."""
    error = _source_error(SecretRef.parse(f"file:{tmp_path}"))
    assert str(error).startswith(f"file:{tmp_path}: cannot read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_names_the_reference(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, b"s3cret", 0o000)
    error = _source_error(SecretRef.parse(f"file:{path}"))
    assert str(error) == f"file:{path}: file is not readable"


def test_command_output_is_the_secret() -> None:
    assert SecretRef.parse("command:printf secret").resolve() == b"secret"


def test_command_keeps_quoted_words_and_removes_one_newline() -> None:
    assert SecretRef.parse("command:printf '%s\\n\\n' 'two words'").resolve() == b"two words\n"


def test_command_runs_without_a_shell() -> None:
    """``$HOME`` and ``;`` reach the program verbatim: no shell interprets them."""
    assert SecretRef.parse("command:printf %s $HOME;x").resolve() == b"$HOME;x"


def test_failing_command_names_reference_and_status_but_not_output() -> None:
    script = "printf %s-%s LEAKED STDOUT; printf %s-%s LEAKED STDERR >&2; exit 3"
    ref = SecretRef.parse(f'command:sh -c "{script}"')
    error = _source_error(ref)
    assert str(error) == f"{ref}: exited with status 3"
    assert "LEAKED-STDOUT" not in str(error)
    assert "LEAKED-STDERR" not in str(error)
    assert error.__cause__ is None


def test_missing_program_names_the_reference() -> None:
    ref = SecretRef.parse("command:strongroom-no-such-program-here --flag")
    error = _source_error(ref)
    assert str(error) == f"{ref}: could not run (FileNotFoundError)"


def test_command_that_hangs_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SecretRef, "_COMMAND_TIMEOUT_S", 0.2)
    ref = SecretRef.parse(f"command:{sys.executable} -c 'import time; time.sleep(30)'")
    error = _source_error(ref)
    assert str(error) == f"{ref}: could not run (TimeoutExpired)"


def test_unbalanced_quotes_are_a_secret_source_error() -> None:
    ref = SecretRef.parse("command:printf 'unterminated")
    error = _source_error(ref)
    assert str(error) == f"{ref}: cannot split the command line"


# --- identity ----------------------------------------------------------------


def test_repr_and_str_show_only_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_TEST_SECRET", "VALUE-SHOULD-NOT-LEAK")
    ref = SecretRef.parse("env:STRONGROOM_TEST_SECRET")
    assert ref.resolve() == b"VALUE-SHOULD-NOT-LEAK"
    assert str(ref) == "env:STRONGROOM_TEST_SECRET"
    assert repr(ref) == "SecretRef('env:STRONGROOM_TEST_SECRET')"
    assert "VALUE-SHOULD-NOT-LEAK" not in f"{ref} {ref!r} {[ref]}"


def test_equality_and_hash_follow_the_reference() -> None:
    ref = SecretRef.parse("env:A")
    assert ref == SecretRef("env", "A")
    assert hash(ref) == hash(SecretRef("env", "A"))
    assert ref != SecretRef.parse("env:B")
    assert ref != SecretRef.parse("file:A")
    assert ref != "env:A"
    assert len({ref, SecretRef("env", "A"), SecretRef.parse("env:B")}) == 2


# --- settings structs --------------------------------------------------------


def test_struct_field_accepts_references_and_instances() -> None:
    settings = vault(token=SecretRef("file", "/t"))
    assert settings.passphrase == SecretRef("env", "X")
    assert settings.token == SecretRef("file", "/t")
    assert vault().token is None


def test_struct_refuses_a_literal_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        vault(passphrase=LITERAL)
    message = str(caught.value)
    assert message.startswith("expected a secret reference")
    assert message.endswith("- at `$.passphrase`")
    assert LITERAL not in message
    assert LITERAL not in repr(caught.value)


def test_struct_refuses_a_non_string_reference() -> None:
    with pytest.raises(ValidationError) as caught:
        vault(passphrase=12345)
    assert str(caught.value) == "expected a secret reference string - at `$.passphrase`"


def test_backend_settings_errors_never_quote_the_input() -> None:
    """Not only secret fields: any refused value could be a secret in the wrong key."""
    for values in ({"url": ["VALUE-SHOULD-NOT-LEAK"]}, {"retries": "VALUE-SHOULD-NOT-LEAK"}):
        with pytest.raises(ValidationError) as caught:
            vault(**values)
        assert "VALUE-SHOULD-NOT-LEAK" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("mode", "expected one of: fast, safe"),
        ("level", "expected one of: low, high"),
        ("retries", "expected an integer, got a string"),
        ("verify", "expected a boolean, got a string"),
    ],
)
def test_config_errors_never_quote_a_secret_looking_value(key: str, expected: str) -> None:
    """msgspec quotes a refused enum or Literal value; the config error must not."""
    leak = "hunter2-VALUE-SHOULD-NOT-LEAK"
    config = parse_config({"stores": {"x": {"use": "v", key: leak}}}, source="s.toml", environ={})
    with pytest.raises(ConfigError) as caught:
        config.choice("stores.x").validate(VaultSettings)
    message = str(caught.value)
    assert message == f"s.toml: [stores.x] key {key!r}: {expected}"
    assert "hunter2" not in message


def test_range_errors_name_the_bound() -> None:
    with pytest.raises(ValidationError, match=r"Expected `int` <= 5 - at `\$.retries`"):
        vault(retries=6)
    assert vault(retries="5").retries == 5


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("yes", True), ("On", True), ("1", True), ("no", False), ("0", False)],
)
def test_strings_from_the_environment_convert(word: str, value: bool) -> None:
    assert vault(verify=word).verify is value


def test_to_table_gives_every_setting_with_references_as_strings() -> None:
    settings = vault()
    assert settings.to_table() == {
        "url": "u",
        "passphrase": "env:X",
        "token": None,
        "retries": 1,
        "verify": True,
        "mode": "safe",
        "level": None,
    }
    assert VaultSettings.from_table(settings.to_table()) == settings


def test_descriptions_are_on_the_type() -> None:
    (retries,) = [f for f in msgspec.structs.fields(VaultSettings) if f.name == "retries"]
    assert retries.type.__metadata__[0].description == "attempts after the first"


def test_backend_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="Object contains unknown field `pasphrase`"):
        vault(pasphrase="env:Y")


def test_no_settings_refuses_any_key() -> None:
    assert NoSettings() == NoSettings()
    assert NoSettings.from_table({}) == NoSettings()
    with pytest.raises(ValidationError, match="unknown field `rounds`"):
        NoSettings.from_table({"rounds": 3})


def test_backend_settings_are_frozen_and_keyword_only() -> None:
    settings = vault()
    with pytest.raises(AttributeError, match="immutable"):
        settings.url = "v"  # type: ignore[misc]
    assert settings.url == "u"
    with pytest.raises(TypeError):
        VaultSettings("u", SecretRef("env", "X"))  # type: ignore[misc]


def test_no_module_on_the_cli_path_imports_pydantic(tmp_path: Path) -> None:
    """pydantic costs tens of milliseconds to import; the CLI must start fast."""
    config = tmp_path / "strongroom.toml"
    config.write_text(f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\n')
    probe = (
        "import sys\n"
        "import strongroom.cli.main, strongroom._stack, strongroom.config\n"
        "from strongroom.cli.main import main\n"
        "for argv in (['status'], ['config', 'check']):\n"
        "    try:\n"
        "        main(['--config', sys.argv[1], *argv])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
        "assert 'msgspec' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "STRONGROOM_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "ok: the stack is valid" in done.stdout
