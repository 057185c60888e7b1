"""Finding, parsing and validating the config, and the one-line errors it gives.

Every error is a ``ConfigError`` (exit 2) whose message names the source (a
file, or ``$VARIABLE`` for an override), the table and key, and what was
expected, and never quotes the offending value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from conftest import MakeDistribution
from strongroom import Strongroom
from strongroom._loading import SLOTS
from strongroom.config import BUILTIN_SOURCE, DEFAULT_STACK, Config, load_config, parse_config
from strongroom.errors import BackendNotFoundError, ConfigError
from strongroom.settings import BackendSettings, SecretRef

LEAK = "VALUE-SHOULD-NOT-LEAK"
SOURCE = "/etc/strongroom/strongroom.toml"
#: The general tables, then one per slot (server-side slots too), as errors list them.
TABLES_IN_ORDER = ", ".join(
    ["strongroom", "plugins", "signing", "server", *(slot.table for slot in SLOTS)]
)
TOP_LEVEL_TABLES = ", ".join(sorted(TABLES_IN_ORDER.split(", ")))
NAME_RULE = "expected a lower-case name: letters, digits, '-' and '_', starting with a letter"
REFERENCE_RULE = (
    "expected a secret reference (env:NAME, file:PATH or command:PROGRAM ARGS); "
    "secrets never sit in the config file"
)
STORE_KEYS = "api_token, max_size, passphrase, password, path"

FAKE_STORE_MODULE = """
from strongroom.settings import BackendSettings, SecretRef
from strongroom.store import Store


class FakeStoreSettings(BackendSettings):
    path: str
    max_size: int = 1024
    passphrase: SecretRef | None = None
    api_token: str = ""
    password: str = ""


class FakeStore(Store):  # only its settings are used; the methods let the class load
    Settings = FakeStoreSettings

    def put(self, key, value): raise NotImplementedError
    def get(self, key): raise NotImplementedError
    def delete(self, key): raise NotImplementedError
    def keys(self, prefix=""): raise NotImplementedError
    def put_blob(self, key, chunks): raise NotImplementedError
    def get_blob(self, key): raise NotImplementedError
    def reencrypt(self): raise NotImplementedError
"""


class FakeStoreSettings(BackendSettings):
    """The same model the fake store distribution declares."""

    path: str
    max_size: int = 1024
    passphrase: SecretRef | None = None
    api_token: str = ""
    password: str = ""


ValidateStore = Callable[..., BackendSettings]


def config_error(call: Callable[[], object]) -> str:
    """Run ``call``; check it raised a one-line ConfigError that quotes no value."""
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    assert LEAK not in message
    return message


def write_config(folder: Path, text: str, name: str = "strongroom.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def parse(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    return parse_config(data, source=SOURCE, environ=environ or {})


@pytest.fixture(params=["BackendChoice.validate", "Strongroom.resolve"])
def validate_store(
    request: pytest.FixtureRequest, make_distribution: MakeDistribution
) -> ValidateStore:
    """Validate ``[stores.x] use = "fake"`` plus settings, directly or through a stack.

    The stack path loads a real backend registered under ``strongroom.stores``.
    """
    make_distribution(
        "strongroom-fake-store",
        entry_points={"strongroom.stores": {"fake": "strongroom_fake_store:FakeStore"}},
        modules={"strongroom_fake_store": FAKE_STORE_MODULE},
    )

    def validate(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
        config = parse({"stores": {"x": {"use": "fake", **settings}}}, environ)
        if request.param == "Strongroom.resolve":
            return Strongroom(config).resolve("stores.x").settings
        return config.choice("stores.x").validate(FakeStoreSettings)

    return validate


# --- where the config comes from ---------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An explicit file, one named by $STRONGROOM_CONFIG and ./strongroom.toml."""
    return (
        write_config(tmp_path / "explicit", '[cipher_suite]\nuse = "chacha20-poly1305"\n'),
        write_config(tmp_path / "env", '[cipher_suite]\nuse = "xchacha20-poly1305"\n'),
        write_config(tmp_path / "cwd", '[cipher_suite]\nuse = "aes-256-gcm"\n'),
    )


def test_explicit_path_wins(three_configs: tuple[Path, Path, Path]) -> None:
    explicit, env, cwd = three_configs
    config = load_config(explicit, environ={"STRONGROOM_CONFIG": str(env)}, cwd=cwd.parent)
    assert config.source == str(explicit)
    assert config.choice("cipher_suite").use == "chacha20-poly1305"


def test_explicit_path_may_be_a_string(three_configs: tuple[Path, Path, Path]) -> None:
    explicit, _, _ = three_configs
    assert load_config(str(explicit), environ={}).source == str(explicit)


def test_environment_variable_comes_second(three_configs: tuple[Path, Path, Path]) -> None:
    _, env, cwd = three_configs
    config = load_config(environ={"STRONGROOM_CONFIG": str(env)}, cwd=cwd.parent)
    assert config.source == str(env)
    assert config.choice("cipher_suite").use == "xchacha20-poly1305"


@pytest.mark.parametrize("environ", [{}, {"STRONGROOM_CONFIG": ""}])
def test_working_directory_file_comes_third(
    three_configs: tuple[Path, Path, Path], environ: dict[str, str]
) -> None:
    """An empty $STRONGROOM_CONFIG counts as unset."""
    _, _, cwd = three_configs
    config = load_config(environ=environ, cwd=cwd.parent)
    assert config.source == str(cwd)
    assert config.choice("cipher_suite").origins["use"] == str(cwd)


def test_built_in_defaults_come_last(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.source == BUILTIN_SOURCE == "built-in defaults"
    choice = config.choice("cipher_suite")
    assert choice.use == DEFAULT_STACK["cipher_suite"]["use"] == "aes-256-gcm"
    assert choice.origins == {"use": "built-in defaults"}
    assert [c.table for c in config.backends] == [
        "cipher_suite",
        "key_providers.main",
        "stores.default",
    ]
    assert (config.account, config.autoload, config.blocked) == ("default", True, frozenset())


def test_a_directory_named_strongroom_toml_is_not_a_config(tmp_path: Path) -> None:
    (tmp_path / "strongroom.toml").mkdir()
    assert load_config(environ={}, cwd=tmp_path).source == BUILTIN_SOURCE


def test_missing_explicit_path_is_an_error_even_with_a_fallback(
    three_configs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, env, cwd = three_configs
    missing = tmp_path / "nope.toml"
    message = config_error(
        lambda: load_config(missing, environ={"STRONGROOM_CONFIG": str(env)}, cwd=cwd.parent)
    )
    assert message == f"{missing}: config file named by --config does not exist"


def test_missing_file_named_by_environment_is_an_error(
    three_configs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, _, cwd = three_configs
    missing = tmp_path / "nope.toml"
    message = config_error(
        lambda: load_config(environ={"STRONGROOM_CONFIG": str(missing)}, cwd=cwd.parent)
    )
    assert message == f"{missing}: config file named by $STRONGROOM_CONFIG does not exist"


# --- reading the file --------------------------------------------------------


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[plugins]\nautoload = true\nblock = ["a" "b"]\n')
    message = config_error(lambda: load_config(path, environ={}))
    assert message == f"{path}: invalid TOML: Unclosed array (at line 3, column 14)"


def test_malformed_toml_does_not_quote_the_bad_value(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"[strongroom]\naccount = {LEAK}\n")
    message = config_error(lambda: load_config(path, environ={}))
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in message


def test_non_utf8_file_is_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "strongroom.toml"
    path.write_bytes(b'[strongroom]\naccount = "\xff\xfe"\n')
    message = config_error(lambda: load_config(path, environ={}))
    assert message == f"{path}: invalid TOML: not UTF-8 text"


# --- the tables strongroom itself reads --------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        pytest.param(
            '[ciphersuite]\nuse = "aes-256-gcm"\n',
            f"[ciphersuite]: unknown table; expected one of: {TOP_LEVEL_TABLES}",
            id="typo-table",
        ),
        pytest.param(
            "[plugins]\nautolod = false\n",
            "[plugins] key 'autolod': unknown key; expected one of: autoload, block",
            id="typo-plugins-key",
        ),
        pytest.param(
            "[strongroom]\ndatadir = 'x'\n",
            "[strongroom] key 'datadir': unknown key; "
            "expected one of: account, data_dir, idle_timeout",
            id="typo-strongroom-key",
        ),
        pytest.param(
            "[plugins]\nautoload = [1]\n",
            "[plugins] key 'autoload': expected a boolean, got a list",
            id="autoload-not-bool",
        ),
        pytest.param(
            f'[plugins]\nblock = "{LEAK}"\n',
            "[plugins] key 'block': expected a list, got a string",
            id="block-not-list",
        ),
        pytest.param(
            f'[plugins]\nblock = ["ok", 1]\n[strongroom]\naccount = "{LEAK}"\n',
            "[strongroom] key 'account': " + NAME_RULE,
            id="two-problems-the-first-is-reported",
        ),
        pytest.param(
            f'[strongroom]\naccount = "{LEAK}"\n',
            f"[strongroom] key 'account': {NAME_RULE}",
            id="bad-account",
        ),
        pytest.param(
            "[plugins]\nblock = ['ok', 1]\n",
            "[plugins] key 'block': expected a string, got an integer (list item 2)",
            id="bad-list-item",
        ),
        pytest.param(
            "[strongroom]\nidle_timeout = -1\n",
            "[strongroom] key 'idle_timeout': expected a number >= 0.0",
            id="out-of-range",
        ),
        pytest.param(
            '[stores."Bad Name"]\nuse = "fake"\n',
            f"[stores] table name 'Bad Name': {NAME_RULE}",
            id="bad-instance-name",
        ),
        pytest.param(
            f'[stores.x]\npath = "{LEAK}"\n',
            "[stores.x] key 'use': missing required key",
            id="missing-use",
        ),
        pytest.param(
            '[cipher_suite]\nuse = ""\n',
            "[cipher_suite] key 'use': expected a non-empty string",
            id="empty-use",
        ),
        pytest.param(
            f'cipher_suite = "{LEAK}"\n',
            "top-level key 'cipher_suite': expected a table",
            id="slot-not-a-table",
        ),
        pytest.param(
            f'[stores]\nx = "{LEAK}"\n',
            "[stores] key 'x': expected a table",
            id="instance-not-a-table",
        ),
    ],
)
def test_invalid_file_names_file_table_key_and_expectation(
    tmp_path: Path, toml: str, expected: str
) -> None:
    path = write_config(tmp_path, toml)
    assert config_error(lambda: load_config(path, environ={})) == f"{path}: {expected}"


def test_general_tables_are_read(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[strongroom]\naccount = "work-2"\n[plugins]\nautoload = false\nblock = ["a", "b"]\n',
    )
    config = load_config(path, environ={})
    assert (config.account, config.autoload, config.blocked) == (
        "work-2",
        False,
        frozenset({"a", "b"}),
    )


def test_choice_of_an_unconfigured_table_is_an_error() -> None:
    message = config_error(lambda: parse({}).choice("transport"))
    assert message == f"{SOURCE}: no [transport] table is configured"


# --- a backend's own settings ------------------------------------------------


def test_valid_store_settings_are_typed(validate_store: ValidateStore) -> None:
    settings = validate_store(
        {"path": "/data", "max_size": 7, "passphrase": "env:PASS", "api_token": "file:/t"}
    )
    assert type(settings).__name__ == "FakeStoreSettings"
    assert settings.passphrase == SecretRef("env", "PASS")
    assert settings.to_table() == {
        "path": "/data",
        "max_size": 7,
        "passphrase": "env:PASS",
        "api_token": "file:/t",
        "password": "",
    }


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            {"path": "/p", "pth": LEAK},
            f"[stores.x] key 'pth': unknown key; expected one of: {STORE_KEYS}",
            id="typo-key",
        ),
        pytest.param(
            {"path": "/p", "max_size": LEAK},
            "[stores.x] key 'max_size': expected an integer, got a string",
            id="wrong-type",
        ),
        pytest.param(
            {"path": [LEAK]},
            "[stores.x] key 'path': expected a string, got a list",
            id="list-for-string",
        ),
        pytest.param(
            {"path": "/p", "max_size": {"k": LEAK}},
            "[stores.x] key 'max_size': expected an integer, got a table",
            id="table-for-int",
        ),
        pytest.param({"max_size": 1}, "[stores.x] key 'path': missing required key", id="missing"),
        pytest.param(
            {"path": "/p", "passphrase": LEAK},
            f"[stores.x] key 'passphrase': {REFERENCE_RULE}",
            id="literal-passphrase",
        ),
        pytest.param(
            {"path": "/p", "api_token": LEAK},
            f"[stores.x] key 'api_token': {REFERENCE_RULE}",
            id="literal-in-str-typed-api-token",
        ),
        pytest.param(
            {"path": "/p", "password": LEAK},
            f"[stores.x] key 'password': {REFERENCE_RULE}",
            id="literal-in-str-typed-password",
        ),
        pytest.param(
            {"path": "/p", "password": [LEAK]},
            f"[stores.x] key 'password': {REFERENCE_RULE}",
            id="list-in-secret-key",
        ),
    ],
)
def test_invalid_store_settings(
    validate_store: ValidateStore, settings: dict[str, Any], expected: str
) -> None:
    assert config_error(lambda: validate_store(settings)) == f"{SOURCE}: {expected}"


def test_override_of_a_setting_is_named_as_the_source(validate_store: ValidateStore) -> None:
    variable = "STRONGROOM__STORES__X__MAX_SIZE"
    message = config_error(lambda: validate_store({"path": "/p"}, {variable: LEAK}))
    assert message.startswith(f"${variable}: [stores.x] key 'max_size': expected an integer")


def test_override_value_is_converted_by_the_model(validate_store: ValidateStore) -> None:
    settings = validate_store({"path": "/p"}, {"STRONGROOM__STORES__X__MAX_SIZE": "2048"})
    assert settings.max_size == 2048


@pytest.mark.parametrize(
    "key",
    ["passphrase", "password", "secret", "token", "api_key", "private_key", "pin", "api_token",
     "db_password", "master_passphrase", "client_secret"],
)  # fmt: skip
def test_secret_named_keys_refuse_literals_whatever_the_type(key: str) -> None:
    model = msgspec.defstruct("Loose", [(key, str, "")], bases=(BackendSettings,))
    choice = parse({"stores": {"x": {"use": "fake", key: LEAK}}}).choice("stores.x")
    message = config_error(lambda: choice.validate(model))
    assert message == f"{SOURCE}: [stores.x] key {key!r}: {REFERENCE_RULE}"
    accepted = parse({"stores": {"x": {"use": "fake", key: "env:X"}}}).choice("stores.x")
    assert getattr(accepted.validate(model), key) == "env:X"


@pytest.mark.parametrize("key", ["pins", "token_url", "spin", "secrets_dir", "passwordless"])
def test_other_keys_may_hold_plain_strings(key: str) -> None:
    model = msgspec.defstruct("Loose", [(key, str, "")], bases=(BackendSettings,))
    choice = parse({"stores": {"x": {"use": "fake", key: "plain"}}}).choice("stores.x")
    assert getattr(choice.validate(model), key) == "plain"


def test_model_level_check_names_the_backend_table() -> None:
    class Range(BackendSettings, frozen=True):
        low: int = 0
        high: int = 0

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low above high")

    choice = parse({"stores": {"x": {"use": "fake", "low": 2}}}).choice("stores.x")
    message = config_error(lambda: choice.validate(Range))
    assert message == f"{SOURCE}: [stores.x]: low above high"


def test_settings_for_a_backend_without_settings_are_refused() -> None:
    config = parse({"cipher_suite": {"use": "aes-256-gcm", "rounds": LEAK}})
    message = config_error(lambda: Strongroom(config).resolve("cipher_suite"))
    assert message == f"{SOURCE}: [cipher_suite] key 'rounds': unknown key; expected one of: none"


def test_secret_key_is_refused_even_where_the_backend_knows_no_such_key() -> None:
    config = parse({"cipher_suite": {"use": "aes-256-gcm", "secret": LEAK}})
    message = config_error(lambda: Strongroom(config).resolve("cipher_suite"))
    assert message == f"{SOURCE}: [cipher_suite] key 'secret': {REFERENCE_RULE}"


def test_unknown_backend_lists_the_available() -> None:
    config = parse_config({"cipher_suite": {"use": "rot13"}}, source="x.toml", environ={})
    with pytest.raises(BackendNotFoundError) as caught:
        Strongroom(config).resolve("cipher_suite")
    message = str(caught.value)
    assert "'rot13'" in message
    assert "strongroom.cipher_suites" in message
    assert "aes-256-gcm" in message
    assert "chacha20-poly1305" in message
    assert caught.value.exit_code == 2


# --- how the file combines with the defaults ---------------------------------


def test_file_table_replaces_the_default_table(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[cipher_suite]\nuse = "chacha20-poly1305"\n')
    choice = load_config(path, environ={}).choice("cipher_suite")
    assert choice.use == "chacha20-poly1305"
    assert choice.origins == {"use": str(path)}


def test_file_table_is_not_merged_with_the_default(tmp_path: Path) -> None:
    """A [cipher_suite] without ``use`` does not inherit the default's ``use``."""
    path = write_config(tmp_path, "[cipher_suite]\nrounds = 3\n")
    message = config_error(lambda: load_config(path, environ={}))
    assert message == f"{path}: [cipher_suite] key 'use': missing required key"


def test_tables_the_file_omits_come_from_the_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[plugins]\nautoload = false\n[stores.notes]\nuse = "fake"\n')
    config = load_config(path, environ={})
    suite = config.choice("cipher_suite")
    assert suite.use == DEFAULT_STACK["cipher_suite"]["use"]
    assert suite.origins["use"] == BUILTIN_SOURCE
    assert config.choice("stores.notes").origins["use"] == str(path)
    assert config.instances("stores") == ["notes"]
    assert config.instances("transport") == []
    # [stores.notes] replaced the default [stores] table as a whole
    assert [c.table for c in config.backends] == [
        "cipher_suite",
        "key_providers.main",
        "stores.notes",
    ]


# --- environment overrides ---------------------------------------------------


def test_override_switches_the_backend(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[cipher_suite]\nuse = "aes-256-gcm"\n')
    variable = "STRONGROOM__CIPHER_SUITE__USE"
    config = load_config(path, environ={variable: "chacha20-poly1305"})
    choice = config.choice("cipher_suite")
    assert choice.use == "chacha20-poly1305"
    assert choice.origins["use"] == f"${variable}"


def test_override_switches_the_default_backend() -> None:
    config = parse({}, {"STRONGROOM__CIPHER_SUITE__USE": "chacha20-poly1305"})
    assert config.choice("cipher_suite").use == "chacha20-poly1305"


def test_override_replaces_one_key_of_a_file_table(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[stores.notes]\nuse = "fake"\npath = "/a"\nmax_size = 1\n')
    config = load_config(path, environ={"STRONGROOM__STORES__NOTES__PATH": "/b"})
    choice = config.choice("stores.notes")
    assert dict(choice.settings) == {"path": "/b", "max_size": 1}
    assert choice.origins == {
        "use": str(path),
        "path": "$STRONGROOM__STORES__NOTES__PATH",
        "max_size": str(path),
    }


def test_override_creates_an_instance() -> None:
    config = parse(
        {},
        {"STRONGROOM__STORES__NOTES__USE": "fake", "STRONGROOM__STORES__NOTES__PATH": "/n"},
    )
    assert config.instances("stores") == ["default", "notes"]  # added beside the default
    choice = config.choice("stores.notes")
    assert (choice.use, dict(choice.settings)) == ("fake", {"path": "/n"})


def test_table_created_by_an_override_names_it_when_incomplete() -> None:
    variable = "STRONGROOM__STORES__NOTES__PATH"
    message = config_error(lambda: parse({}, {variable: "/n"}))
    assert message == f"${variable}: [stores.notes] key 'use': missing required key"


def test_override_names_are_matched_in_lower_case() -> None:
    config = parse({}, {"STRONGROOM__Cipher_Suite__USE": "chacha20-poly1305"})
    assert config.choice("cipher_suite").use == "chacha20-poly1305"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("0", False), ("no", False), ("true", True), ("1", True), ("yes", True)],
)
def test_boolean_override_is_parsed(value: str, expected: bool) -> None:
    assert parse({}, {"STRONGROOM__PLUGINS__AUTOLOAD": value}).autoload is expected


def test_bad_override_value_names_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[plugins]\nautoload = true\n")
    variable = "STRONGROOM__PLUGINS__AUTOLOAD"
    message = config_error(lambda: load_config(path, environ={variable: LEAK}))
    assert message == f"${variable}: [plugins] key 'autoload': expected a boolean, got a string"


def test_unknown_key_override_names_the_variable() -> None:
    variable = "STRONGROOM__STRONGROOM__DATADIR"
    message = config_error(lambda: parse({}, {variable: LEAK}))
    assert message == (
        f"${variable}: [strongroom] key 'datadir': unknown key; "
        "expected one of: account, data_dir, idle_timeout"
    )


@pytest.mark.parametrize(
    ("variable", "form"),
    [
        ("STRONGROOM__CIPHER_SUITE", "STRONGROOM__<TABLE>__<KEY>"),
        ("STRONGROOM__CIPHER_SUITE__USE__X", "STRONGROOM__<TABLE>__<KEY>"),
        ("STRONGROOM__PLUGINS__AUTOLOAD__X", "STRONGROOM__<TABLE>__<KEY>"),
        ("STRONGROOM__STORES__USE", "STRONGROOM__<TABLE>__<INSTANCE>__<KEY>"),
        ("STRONGROOM__STORES__NOTES__PATH__X", "STRONGROOM__<TABLE>__<INSTANCE>__<KEY>"),
        ("STRONGROOM__STORES__NOTES__", "STRONGROOM__<TABLE>__<INSTANCE>__<KEY>"),
        ("STRONGROOM__CIPHERSUITE__USE", "STRONGROOM__<TABLE>__<KEY>"),
        ("STRONGROOM__", "STRONGROOM__<TABLE>__<KEY>"),
    ],
)
def test_malformed_override_names_the_variable(variable: str, form: str) -> None:
    message = config_error(lambda: parse({}, {variable: LEAK}))
    assert message == (f"${variable}: expected {form} with TABLE one of: {TABLES_IN_ORDER}")


def test_unrelated_variables_are_ignored() -> None:
    environ = {"STRONGROOM_CONFIG": "", "STRONGROOMX__Y__Z": LEAK, "STRONGROOM_DEBUG": "1"}
    assert parse({}, environ).choice("cipher_suite").use == "aes-256-gcm"


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM__PLUGINS__AUTOLOAD", "false")
    assert parse_config({}, source=SOURCE).autoload is False


def test_overrides_mutate_neither_the_defaults_nor_the_data() -> None:
    defaults = copy.deepcopy(dict(DEFAULT_STACK))
    data: dict[str, Any] = {"stores": {"notes": {"use": "fake"}}}
    original = copy.deepcopy(data)
    environ = {
        "STRONGROOM__CIPHER_SUITE__USE": "chacha20-poly1305",
        "STRONGROOM__CIPHER_SUITE__ROUNDS": "3",
        "STRONGROOM__STORES__NOTES__PATH": "/n",
        "STRONGROOM__STORES__MORE__USE": "fake",
    }
    config = parse(data, environ)
    assert config.choice("cipher_suite").use == "chacha20-poly1305"
    assert defaults == DEFAULT_STACK
    assert data == original
    assert parse({}).choice("cipher_suite").use == "aes-256-gcm"
    assert dict(parse({}).choice("cipher_suite").settings) == {}


# --- data_dir ----------------------------------------------------------------


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "conf", '[strongroom]\ndata_dir = "data"\n')
    assert load_config(path, environ={}).data_dir == tmp_path / "conf" / "data"


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    path = write_config(tmp_path / "conf", f'[strongroom]\ndata_dir = "{tmp_path / "d"}"\n')
    assert load_config(path, environ={}).data_dir == tmp_path / "d"


def test_data_dir_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_config(tmp_path / "conf", '[strongroom]\ndata_dir = "~/vault"\n')
    assert load_config(path, environ={}).data_dir == tmp_path / "home" / "vault"


def test_relative_data_dir_override_is_not_rebased_on_the_file(tmp_path: Path) -> None:
    """The override did not come from the file, so the file's folder means nothing to it."""
    path = write_config(tmp_path / "conf", '[strongroom]\ndata_dir = "data"\n')
    config = load_config(path, environ={"STRONGROOM__STRONGROOM__DATA_DIR": "elsewhere"})
    assert config.data_dir == Path("elsewhere")


def test_default_data_dir_honours_xdg_data_home(tmp_path: Path) -> None:
    config = load_config(environ={"XDG_DATA_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert config.data_dir == tmp_path / "xdg" / "strongroom"


@pytest.mark.parametrize("environ", [{}, {"XDG_DATA_HOME": ""}])
def test_default_data_dir_without_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(environ=environ, cwd=tmp_path)
    assert config.data_dir == tmp_path / "home" / ".local" / "share" / "strongroom"
