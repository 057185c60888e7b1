"""Reading a stack's configuration: one TOML file plus environment overrides.

Where the file comes from, first match wins: the ``path`` argument (the
CLI's ``--config``), ``$STRONGROOM_CONFIG``, ``./strongroom.toml``.  With
none of them, the embedded default stack is used.  Every table the file
sets replaces the default table of that name as a whole.

A single setting is overridden from the environment with
``STRONGROOM__<TABLE>__<KEY>`` (singular slots and the ``strongroom`` and
``plugins`` tables) or ``STRONGROOM__<TABLE>__<INSTANCE>__<KEY>`` (stores
and key providers); names are matched in lower case and the value is passed
as a string for the setting's model to convert.

Errors name the file or variable, the table and the key, and what was
expected; they never quote a value, which might be a misplaced secret.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from strongroom._config_path import locate
from strongroom._loading import SLOTS, SLOTS_BY_TABLE
from strongroom._retention import RETENTION_KEY, UNITS, parse_retention
from strongroom.errors import ConfigError
from strongroom.settings import BackendSettings, SecretRef

__all__ = ["BackendChoice", "Config", "load_config", "parse_config"]

OVERRIDE_PREFIX = "STRONGROOM__"
BUILTIN_SOURCE = "built-in defaults"

#: The embedded default stack, used where the config file says nothing.
DEFAULT_STACK: Mapping[str, Mapping[str, Any]] = {
    "cipher_suite": {"use": "aes-256-gcm"},
    "key_providers": {"main": {"use": "passphrase"}},
    "stores": {"default": {"use": "files"}},
}

#: Setting names that can only ever hold a secret, whatever the backend says.
_SECRET_KEY = re.compile(r"(^|_)(passphrase|password|secret|token|api_key|private_key|pin)$")

#: Account and instance names: safe as directory names and in variable names.
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
NAME_RULE = "expected a lower-case name: letters, digits, '-' and '_', starting with a letter"
_SettingsT = TypeVar("_SettingsT", bound=BackendSettings)


# The general tables are validated as backend settings are: frozen, unknown
# keys refused, strings from overrides converted.
class _StrongroomTable(BackendSettings, frozen=True, kw_only=True):
    data_dir: str = ""
    account: Name = "default"
    idle_timeout: Annotated[float, msgspec.Meta(ge=0)] = 300.0


class _PluginsTable(BackendSettings, frozen=True, kw_only=True):
    autoload: bool = True
    block: tuple[str, ...] = ()


class SigningTable(BackendSettings, frozen=True, kw_only=True):
    """``[signing]``: requests are signed (``strongroom.signing``) when the table is set."""

    key_id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_-]{1,48}$",
            description="this device's name on the server; the wire key id adds .v<version>",
        ),
    ]
    responses: Annotated[
        Literal["required", "off"],
        msgspec.Meta(description="'required': refuse a response without a valid signature"),
    ] = "required"


class ServerTable(BackendSettings, frozen=True, kw_only=True):
    """``[server]``: how ``strongroom serve`` listens (see ``docs/server.md``)."""

    host: Annotated[str, msgspec.Meta(min_length=1, description="address to listen on")] = (
        "127.0.0.1"
    )
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="TCP port")] = 8443
    certfile: Annotated[
        str, msgspec.Meta(min_length=1, description="PEM chain, leaf first; relative to the file")
    ]
    keyfile: Annotated[
        str, msgspec.Meta(min_length=1, description="PEM private key; relative to the file")
    ]
    window: Annotated[
        float, msgspec.Meta(gt=0, le=86_400, description="seconds a request's time may be off")
    ] = 300.0
    max_body_bytes: Annotated[
        int, msgspec.Meta(ge=1024, le=1 << 30, description="largest request body accepted")
    ] = 16 * 1024 * 1024
    secret: Annotated[
        SecretRef | None,
        msgspec.Meta(description="key of challenge tokens, shared by every server process"),
    ] = None


#: Every top-level table, in the order errors list them.
_TABLES = ("strongroom", "plugins", "signing", "server", *(slot.table for slot in SLOTS))


@dataclass(frozen=True)
class BackendChoice:
    """One backend a config selects, with its settings not yet validated."""

    #: Config table, e.g. ``cipher_suite`` or ``stores.notes``.
    table: str
    #: The slot's table name, e.g. ``stores``.
    slot: str
    use: str
    settings: Mapping[str, Any]
    #: Where ``use`` and each setting came from (a file path or a variable name).
    origins: Mapping[str, str] = field(repr=False)
    #: What ``env:`` references read: the ``environ`` the config was parsed with.
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    #: A store's ``retention`` in seconds (:mod:`strongroom._retention`); ``None``: kept forever.
    retention: float | None = None
    #: ``policy``: "unlocked", or "presence" (a provider or store asks for the user first).
    policy: str = "unlocked"
    #: A store's own ``idle_timeout`` in seconds: its keys are wiped that long after last use.
    idle_timeout: float | None = None

    def validate(self, model: type[_SettingsT]) -> _SettingsT:
        """Validate the settings against the backend's settings struct.

        :raises ConfigError: naming the source, table, key and what was expected.
        """
        for key, value in self.settings.items():
            if _SECRET_KEY.search(key) and not isinstance(value, SecretRef):
                try:
                    SecretRef.parse(value if isinstance(value, str) else "")
                except ValueError as exc:
                    raise ConfigError(
                        str(exc), source=self.origins[key], location=f"[{self.table}] key {key!r}"
                    ) from None
        return _convert(model, self.settings, self.table, self.origins, self.environ)


@dataclass(frozen=True)
class Config:
    """A parsed stack: which backend sits in each slot, and general settings."""

    source: str
    data_dir: Path
    account: str
    #: Seconds of disuse after which an unlocked session locks; 0 never.
    idle_timeout: float
    autoload: bool
    blocked: frozenset[str]
    backends: tuple[BackendChoice, ...]
    #: ``[signing]``, or ``None``: requests are then not signed.
    signing: SigningTable | None = None
    #: ``[server]``, or ``None``: ``strongroom serve`` then refuses to start.
    server: ServerTable | None = None

    def choice(self, table: str) -> BackendChoice:
        """The backend configured for ``table`` (``cipher_suite``, ``stores.notes``...).

        :raises ConfigError: the config does not set that table.
        """
        for choice in self.backends:
            if choice.table == table:
                return choice
        raise ConfigError(f"no [{table}] table is configured", source=self.source)

    def instances(self, slot: str) -> list[str]:
        """The instance names of a plural slot, e.g. ``notes`` for ``[stores.notes]``."""
        return [choice.table.partition(".")[2] for choice in self.backends if choice.slot == slot]

    @property
    def account_dir(self) -> Path:
        """Where the configured account keeps its keys and stores."""
        return self.data_dir / "accounts" / self.account


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Find, read and validate the config, then apply environment overrides.

    :raises ConfigError: the file is missing, unreadable, not TOML, or does
        not validate; or an override names an unknown table.
    """
    environ = os.environ if environ is None else environ
    found = locate(path, environ, str(cwd or Path.cwd()))
    data = _read_toml(Path(found)) if found else {}
    return parse_config(data, source=found or BUILTIN_SOURCE, environ=environ)


def parse_config(
    data: Mapping[str, Any], *, source: str, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate already-parsed TOML ``data`` over the default stack.

    ``environ`` (default: the process environment) supplies the
    ``STRONGROOM__...`` overrides, and is what ``env:`` secret references
    in backend settings read when the secret is needed: an application can
    pass a mapping of its own and keep secrets out of ``os.environ``.

    :raises ConfigError: as :func:`load_config`.
    """
    merged: dict[str, Any] = {**DEFAULT_STACK, **data}
    origins: dict[tuple[str, ...], str] = {
        (table,): source if table in data else BUILTIN_SOURCE for table in merged
    }
    _apply_overrides(merged, origins, environ if environ is not None else os.environ)
    for table in merged:
        if table not in _TABLES:
            known = ", ".join(sorted(_TABLES))
            raise ConfigError(
                f"unknown table; expected one of: {known}",
                source=_origin(origins, (table,)),
                location=f"[{table}]",
            )
    general = _general(_StrongroomTable, "strongroom", merged, origins)
    plugins = _general(_PluginsTable, "plugins", merged, origins)
    signing = _general(SigningTable, "signing", merged, origins) if "signing" in merged else None
    server = _general(ServerTable, "server", merged, origins) if "server" in merged else None
    backends: list[BackendChoice] = []
    for slot in SLOTS:
        if slot.table not in merged:
            continue
        value = _table(merged[slot.table], (slot.table,), origins)
        if not slot.plural:
            backends.append(_backend_choice((slot.table,), value, origins, environ))
            continue
        for instance, table in value.items():
            _check_instance_name(instance, slot.table, origins)
            path = (slot.table, instance)
            backends.append(_backend_choice(path, _table(table, path, origins), origins, environ))
    return Config(
        source=source,
        data_dir=_data_dir(general.data_dir, _origin(origins, ("strongroom", "data_dir")), environ),
        account=general.account,
        idle_timeout=general.idle_timeout,
        autoload=plugins.autoload,
        blocked=frozenset(plugins.block),
        backends=tuple(backends),
        signing=signing,
        server=server,
    )


def _general(
    model: type[_SettingsT],
    table: str,
    merged: Mapping[str, Any],
    origins: Mapping[tuple[str, ...], str],
) -> _SettingsT:
    values = _table(merged.get(table, {}), (table,), origins)
    return _convert(model, values, table, {key: _origin(origins, (table, key)) for key in values})


def _table(
    value: object, path: tuple[str, ...], origins: Mapping[tuple[str, ...], str]
) -> Mapping[str, Any]:
    """``value`` if it is a table.

    :raises ConfigError: it is not.
    """
    if isinstance(value, Mapping):
        return value
    location = (
        f"top-level key {path[0]!r}"
        if len(path) == 1
        else f"[{'.'.join(path[:-1])}] key {path[-1]!r}"
    )
    raise ConfigError("expected a table", source=_origin(origins, path), location=location)


def _check_instance_name(name: str, table: str, origins: Mapping[tuple[str, ...], str]) -> None:
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(
            NAME_RULE,
            source=_origin(origins, (table, name)),
            location=f"[{table}] table name {name!r}",
        )


#: Policy names (see :mod:`strongroom.keys._policy`).
UNLOCKED = "unlocked"
PRESENCE = "presence"
POLICIES = (UNLOCKED, PRESENCE)
#: Keys every backend of a slot takes besides ``use``, read here, not by its settings struct.
_GENERIC_KEYS = {"key_providers": ("policy",), "stores": ("policy", "idle_timeout", RETENTION_KEY)}


def _backend_choice(
    path: tuple[str, ...],
    table: Mapping[str, Any],
    origins: Mapping[tuple[str, ...], str],
    environ: Mapping[str, str] | None,
) -> BackendChoice:
    """``use`` checked, the settings kept for the backend's own struct to validate."""
    name = ".".join(path)
    use = table.get("use")
    problem = (
        "missing required key"
        if use is None
        else "expected a string"
        if not isinstance(use, str)
        else "expected a non-empty string"
        if not use
        else None
    )
    if problem:
        raise ConfigError(
            problem, source=_origin(origins, (*path, "use")), location=f"[{name}] key 'use'"
        )
    assert isinstance(use, str)  # noqa: S101 - checked just above
    generic = ("use", *_GENERIC_KEYS.get(path[0], ()))
    settings = {key: value for key, value in table.items() if key not in generic}

    def where(key: str) -> tuple[str, str]:
        return _origin(origins, (*path, key)), f"[{name}] key {key!r}"

    policy = table.get("policy", UNLOCKED)
    if "policy" in generic and policy not in POLICIES:
        source, location = where("policy")
        expected = " or ".join(repr(known) for known in POLICIES)
        raise ConfigError(f"expected {expected}", source=source, location=location)
    idle = table.get("idle_timeout")
    if "idle_timeout" in generic and idle is not None:
        idle = _seconds(idle, *where("idle_timeout"))
    retention = None
    if RETENTION_KEY in generic and RETENTION_KEY in table:
        retention = parse_retention(
            table[RETENTION_KEY], source=where(RETENTION_KEY)[0], table=name
        )
    return BackendChoice(
        table=name,
        slot=path[0],
        use=use,
        settings=settings,
        origins={
            key: _origin(origins, (*path, key)) for key in [*generic, *settings] if key in table
        },
        environ=environ,
        policy=policy,
        idle_timeout=idle,
        retention=retention,
    )


def _seconds(value: object, source: str, location: str) -> float:
    """A positive duration: a number of seconds, or text such as ``"90s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, str) and value[-1:] in UNITS:
        number: object = value[:-1]
        scale = UNITS[value[-1]]
    else:
        number, scale = value, 1
    try:
        seconds = float(number) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not 0 < seconds < float("inf"):
        raise ConfigError(
            "expected a positive duration: seconds, or a number with s, m, h or d",
            source=source,
            location=location,
        )
    return seconds


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("invalid TOML: not UTF-8 text", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from None


def _apply_overrides(
    merged: dict[str, Any], origins: dict[tuple[str, ...], str], environ: Mapping[str, str]
) -> None:
    for variable in sorted(environ):
        if not variable.startswith(OVERRIDE_PREFIX):
            continue
        path = tuple(variable[len(OVERRIDE_PREFIX) :].lower().split("__"))
        slot = SLOTS_BY_TABLE.get(path[0])
        depth = 3 if slot is not None and slot.plural else 2
        if path[0] not in _TABLES or len(path) != depth or not all(path):
            expected = (
                "STRONGROOM__<TABLE>__<INSTANCE>__<KEY>"
                if depth == 3
                else "STRONGROOM__<TABLE>__<KEY>"
            )
            tables = ", ".join(_TABLES)
            raise ConfigError(
                f"expected {expected} with TABLE one of: {tables}", source=f"${variable}"
            )
        node = merged
        for end, part in enumerate(path[:-1], start=1):
            child = node.get(part)
            if not isinstance(child, Mapping):  # a table the override creates comes from it
                origins[path[:end]] = f"${variable}"
            # copy on write: tables may be shared with DEFAULT_STACK
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[path[-1]] = environ[variable]
        origins[path] = f"${variable}"


def _origin(origins: Mapping[tuple[str, ...], str], loc: tuple[str, ...]) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    return BUILTIN_SOURCE


def _data_dir(configured: str, source: str, environ: Mapping[str, str] | None) -> Path:
    environ = os.environ if environ is None else environ
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute() and source != BUILTIN_SOURCE and not source.startswith("$"):
            path = Path(source).parent / path
        return path
    base = environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base) / "strongroom"


def _convert(
    model: type[_SettingsT],
    values: Mapping[str, Any],
    table: str,
    origins: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> _SettingsT:
    """``model.from_table(values)``, its error made one line that names the key.

    :raises ConfigError: naming the source, table, key and what was expected.
    """
    try:
        return model.from_table(values, environ=environ)
    except msgspec.ValidationError as exc:
        key, message = _reword(str(exc), model)
        source = origins.get(key or "", origins.get("use", BUILTIN_SOURCE))
        location = f"[{table}] key {key!r}" if key else f"[{table}]"
        raise ConfigError(message, source=source, location=location) from None


# Patterns for error paths only, left to re's cache rather than compiled at import.
#: msgspec's message, then where: `` - at `$.key[0]` `` or `` - at `key` in `$.key` ``.
_MSGSPEC_ERROR = r"(?P<message>.*?)(?: - at `(?P<in_key>key` in `)?(?P<path>\$[^`]*)`)?"
_FIELD_IN_MESSAGE = r"Object (?P<what>contains unknown|missing required) field `(?P<key>.*)`"
_PATH = r"\$\.(?P<key>[^.\[]+)(?:\[(?P<index>\d+)\])?"
_TYPE_NAME = r"`([a-z]+)`"
#: msgspec's type names, in TOML's words.
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "a table",
    "null": "no value",
}


def _reword(message: str, model: type[BackendSettings]) -> tuple[str | None, str]:
    """The key and a one-line reason from a msgspec error, quoting no value.

    msgspec's own "Expected ..." messages name types and constraints only;
    "Invalid enum value" quotes the input, so it becomes the list of allowed
    values.  Other messages come from a ``dec_hook`` or ``__post_init__``
    (code, not input) and are kept.
    """
    match = re.fullmatch(_MSGSPEC_ERROR, message)
    assert match is not None  # noqa: S101 - the pattern matches any text
    text, where = match["message"], re.match(_PATH, match["path"] or "")
    if named := re.fullmatch(_FIELD_IN_MESSAGE, text):
        if named["what"] == "missing required":
            return named["key"], "missing required key"
        known = ", ".join(sorted(model.__struct_fields__)) or "none"
        return named["key"], f"unknown key; expected one of: {known}"
    key = where["key"] if where else None
    item = f" (list item {int(where['index']) + 1})" if where and where["index"] else ""
    if match["in_key"]:
        return key, f"a key of this table: {_reason(text, model, key)}"
    return key, _reason(text, model, key) + item


def _reason(text: str, model: type[BackendSettings], key: str | None) -> str:
    if text.startswith(f"Expected `str` matching regex '{NAME_PATTERN}'"):
        return NAME_RULE
    if text.startswith("Expected "):  # "Expected `int` >= 1" -> "expected an integer >= 1"
        return "e" + re.sub(_TYPE_NAME, lambda name: _TYPE_WORDS.get(name[1], name[1]), text[1:])
    if text.startswith("Invalid enum value"):
        return _allowed(model, key)
    if text.startswith("Invalid "):  # another msgspec check: keep its kind, not the value
        return "invalid value: " + re.sub(r"['\"].*|\d+", "", text[len("Invalid ") :]).strip()
    return text


def _allowed(model: type[BackendSettings], key: str | None) -> str:
    """ "expected one of: ..." for a Literal or Enum field, from the type, not the input."""
    import typing

    hint = {info.name: info.type for info in msgspec.structs.fields(model)}.get(key or "")
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    kinds = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) else (hint,)
    )
    choices: list[object] = []
    for kind in kinds:
        if typing.get_origin(kind) is typing.Literal:
            choices.extend(typing.get_args(kind))
        elif isinstance(kind, type) and issubclass(kind, Enum):
            choices.extend(member.value for member in kind)
    if not choices:
        return "expected an allowed value"
    return f"expected one of: {', '.join(map(str, choices))}"
