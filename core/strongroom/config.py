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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from strongroom._config_path import locate
from strongroom._loading import SLOTS, SLOTS_BY_TABLE
from strongroom.errors import ConfigError
from strongroom.settings import SecretRef

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
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StrongroomTable(_Strict):
    data_dir: str = ""
    account: Name = "default"
    idle_timeout: Annotated[float, Field(ge=0)] = 300.0


class _PluginsTable(_Strict):
    autoload: bool = True
    block: tuple[str, ...] = ()


class _BackendTable(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    use: Annotated[str, StringConstraints(min_length=1)]


class _ConfigFile(_Strict):
    strongroom: _StrongroomTable = Field(default_factory=_StrongroomTable)
    plugins: _PluginsTable = Field(default_factory=_PluginsTable)
    cipher_suite: _BackendTable | None = None
    key_providers: dict[Name, _BackendTable] = Field(default_factory=dict)
    stores: dict[Name, _BackendTable] = Field(default_factory=dict)
    transport: _BackendTable | None = None


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

    def validate(self, model: type[_ModelT]) -> _ModelT:
        """Validate the settings against the backend's model.

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
        try:
            return model.model_validate(dict(self.settings))
        except ValidationError as exc:
            raise _config_error(
                exc,
                lambda loc: (
                    self.origins.get(loc[0], self.origins["use"]) if loc else self.origins["use"]
                ),
                (self.table,),
                known_keys=model.model_fields,
            ) from None


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

    :raises ConfigError: as :func:`load_config`.
    """
    merged: dict[str, Any] = {**DEFAULT_STACK, **data}
    origins: dict[tuple[str, ...], str] = {
        (table,): source if table in data else BUILTIN_SOURCE for table in merged
    }
    _apply_overrides(merged, origins, environ if environ is not None else os.environ)
    try:
        parsed = _ConfigFile.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, lambda loc: _origin(origins, loc)) from None

    backends: list[BackendChoice] = []
    for slot in SLOTS:
        value = getattr(parsed, slot.table)
        tables = value.items() if slot.plural else [(None, value)] if value else []
        for instance, table in tables:
            path = (slot.table,) if instance is None else (slot.table, instance)
            settings = dict(table.model_extra or {})
            backends.append(
                BackendChoice(
                    table=".".join(path),
                    slot=slot.table,
                    use=table.use,
                    settings=settings,
                    origins={key: _origin(origins, (*path, key)) for key in ["use", *settings]},
                )
            )
    return Config(
        source=source,
        data_dir=_data_dir(
            parsed.strongroom.data_dir, _origin(origins, ("strongroom", "data_dir")), environ
        ),
        account=parsed.strongroom.account,
        idle_timeout=parsed.strongroom.idle_timeout,
        autoload=parsed.plugins.autoload,
        blocked=frozenset(parsed.plugins.block),
        backends=tuple(backends),
    )


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
        if path[0] not in _ConfigFile.model_fields or len(path) != depth or not all(path):
            expected = (
                "STRONGROOM__<TABLE>__<INSTANCE>__<KEY>"
                if depth == 3
                else "STRONGROOM__<TABLE>__<KEY>"
            )
            tables = ", ".join(_ConfigFile.model_fields)
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


def _config_error(
    exc: ValidationError,
    origin_of: Callable[[tuple[str, ...]], str],
    prefix: tuple[str, ...] = (),
    known_keys: Iterable[str] | None = None,
) -> ConfigError:
    """Turn pydantic's first error into one line; never quote the input value."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = tuple(str(part) for part in first["loc"])
    full = (*prefix, *loc)
    kind = first["type"]

    if not loc:  # a model-level check of a backend's settings
        location = f"[{'.'.join(full)}]"
    elif len(full) == 1:
        location = f"[{full[0]}]" if kind == "extra_forbidden" else f"top-level key {full[0]!r}"
    elif loc and loc[-1] == "[key]":
        location = f"[{'.'.join(full[:-2])}] table name {full[-2]!r}"
    else:
        location = f"[{'.'.join(full[:-1])}] key {full[-1]!r}"

    if kind == "extra_forbidden":
        if known_keys is None:
            known_keys = _KNOWN_KEYS.get(full[:-1], ())
        known = ", ".join(sorted(known_keys)) or "none"
        message = f"unknown {'table' if len(full) == 1 else 'key'}; expected one of: {known}"
    elif kind == "missing":
        message = "missing required key"
    elif kind in _TABLE_TYPES:
        message = "expected a table"
    elif kind in _ARRAY_TYPES:
        message = "expected a list"
    else:
        message = _expected(first["msg"])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ConfigError(message, source=origin_of(loc), location=location)


def _expected(pydantic_message: str) -> str:
    """Reword pydantic's "Input should be ..." as "expected ..."."""
    for lead in ("Input should be ", "Value error, "):
        pydantic_message = pydantic_message.removeprefix(lead)
    if pydantic_message.startswith("String should match pattern"):
        return "expected a lower-case name: letters, digits, '-' and '_', starting with a letter"
    if pydantic_message.startswith("expected"):
        return pydantic_message
    subject, should, rest = pydantic_message.partition(" should ")
    if should and " " not in subject:  # "String should have at least 1 character"
        return f"expected {subject.lower()} to {rest}"
    return f"expected {pydantic_message}"


#: pydantic error types reworded in TOML's terms (pydantic would name a model class or "tuple").
_TABLE_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type"})
_ARRAY_TYPES = frozenset({"list_type", "tuple_type", "set_type", "frozen_set_type"})

_KNOWN_KEYS: Mapping[tuple[str, ...], Iterable[str]] = {
    (): _ConfigFile.model_fields,
    ("strongroom",): _StrongroomTable.model_fields,
    ("plugins",): _PluginsTable.model_fields,
}
