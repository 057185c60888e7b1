"""Typed settings that backends declare, and references to secrets.

Every backend class names a ``Settings`` struct (a :class:`BackendSettings`
subclass, itself a frozen :class:`msgspec.Struct`).  The config loader
validates the backend's table against it with :meth:`BackendSettings.from_table`,
so a typo or a wrong type is reported with the file, table and key.  Unknown
keys are refused, not ignored.  Constraints and help text sit on the type::

    class VaultSettings(BackendSettings):
        url: str
        timeout_s: Annotated[float, Meta(gt=0, description="seconds per request")] = 10.0
        token: SecretRef | None = None

Secrets never sit in a config file.  A setting that needs one is typed
:class:`SecretRef` and holds a reference to where the secret lives::

    env:NAME            an environment variable
    file:/path          a file readable by its owner only (mode 0600 or stricter)
    command:prog args   the standard output of a program (run without a shell)
"""

from __future__ import annotations

import functools
import os
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import msgspec

from strongroom.errors import KeyLockedError, SecretSourceError

__all__ = ["BackendSettings", "NoSettings", "SecretRef"]

#: Strings a boolean setting accepts besides msgspec's own (true/false/1/0),
#: so ``STRONGROOM__..=yes`` works as it reads.
_TRUE = frozenset({"yes", "y", "on", "t"})
_FALSE = frozenset({"no", "n", "off", "f"})


class BackendSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base for a backend's settings: immutable, keyword-only, and unknown keys are errors.

    Subclasses declare fields with defaults and constraints
    (``Annotated[int, msgspec.Meta(ge=1, description=...)]``).  A check that
    spans fields goes in ``__post_init__``, raising ``ValueError`` with a
    message that does not quote the values.
    """

    def __post_init__(self) -> None:
        """Check every field against its type and constraints, as :meth:`from_table` does.

        msgspec checks nothing when a struct is built by calling it, so this
        makes ``PassphraseSettings(memory_kib=1)`` fail as the config would.  A
        subclass that defines ``__post_init__`` calls ``super().__post_init__()``.

        :raises msgspec.ValidationError: a field does not fit its type.
        """
        for name, kind in _field_types(type(self)):
            try:
                msgspec.convert(getattr(self, name), type=kind, dec_hook=_check_custom)
            except msgspec.ValidationError as exc:
                text = str(exc)
                at = f" - at `$.{name}"
                text = text.replace(" - at `$", at, 1) if " - at `$" in text else f"{text}{at}`"
                raise msgspec.ValidationError(text) from None

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> Self:
        """Validate a config table (TOML values, or strings from the environment).

        Strings convert to numbers and booleans as they would from an
        environment override; references convert to :class:`SecretRef`,
        whose ``env:`` names are then read from ``environ`` (``None``: the
        process environment, when the secret is needed).

        :raises msgspec.ValidationError: the table does not validate.  Its
            message may quote a refused value (msgspec names an invalid
            enum value); show it to no one without rewording, as
            :mod:`strongroom.config` does.
        """

        def decode(kind: type, value: Any) -> Any:
            decoded = _decode_custom(kind, value)
            if isinstance(decoded, SecretRef) and environ is not None:
                return SecretRef(decoded.scheme, decoded.target, environ=environ)
            return decoded

        return msgspec.convert(_lax_booleans(cls, table), type=cls, strict=False, dec_hook=decode)

    def to_table(self) -> dict[str, Any]:
        """Every setting, defaults included, as TOML-like values (references as ``env:NAME``)."""
        table: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_encode_custom)
        return table


class NoSettings(BackendSettings, frozen=True):
    """For backends that take no settings: any key in their table is an error."""


class SecretRef:
    """Where a secret comes from; resolving it reads the secret.

    The repr and ``str`` show the reference (``env:NAME``), which is not secret.
    An ``env:`` reference reads ``environ`` if one is given (a config parsed
    with ``parse_config(environ=...)`` passes its own), else the process
    environment, at the moment the secret is needed.
    """

    SCHEMES: ClassVar[tuple[str, ...]] = ("env", "file", "command")
    _COMMAND_TIMEOUT_S: ClassVar[float] = 30.0

    __slots__ = ("environ", "scheme", "target")

    def __init__(
        self, scheme: str, target: str, *, environ: Mapping[str, str] | None = None
    ) -> None:
        if scheme not in self.SCHEMES or not target:
            raise ValueError(f"unsupported secret reference scheme {scheme!r}")
        self.scheme = scheme
        self.target = target
        self.environ = environ

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Parse ``scheme:target``.

        :raises ValueError: if ``text`` is not a reference.  The message never
            quotes ``text``, which may be a secret pasted in by mistake.
        """
        scheme, sep, target = text.partition(":")
        if not sep or scheme not in cls.SCHEMES or not target.strip():
            raise ValueError(
                "expected a secret reference (env:NAME, file:PATH or command:PROGRAM ARGS); "
                "secrets never sit in the config file"
            )
        return cls(scheme, target.strip())

    def resolve(self) -> bytes:
        """Read the secret, with one trailing line ending (``\\n`` or ``\\r\\n``) removed.

        :raises strongroom.errors.KeyLockedError: the variable is unset, or the
            file does not exist: there is no secret to be had now (exit 4).
        :raises SecretSourceError: the file is readable by others or not
            ours, or the command failed: the source itself is unusable (exit 2).
        """
        if self.scheme == "env":
            environ = os.environ if self.environ is None else self.environ
            value = environ.get(self.target)
            if value is None:
                raise KeyLockedError(f"{self}: environment variable is not set")
            return _chomp(value.encode("utf-8", "surrogateescape"))  # bytes the OS gave, as given
        if self.scheme == "file":
            return _chomp(_read_private_file(Path(self.target).expanduser(), str(self)))
        return _chomp(self._run_command())

    def _run_command(self) -> bytes:
        import shlex  # only here: reading the config does not start a program
        import subprocess

        try:
            argv = shlex.split(self.target)
        except ValueError:
            raise SecretSourceError(f"{self}: cannot split the command line") from None
        try:
            done = subprocess.run(  # noqa: S603 - argv from the operator's own config, no shell
                argv, capture_output=True, check=False, timeout=self._COMMAND_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretSourceError(f"{self}: could not run ({type(exc).__name__})") from None
        if done.returncode != 0:
            raise SecretSourceError(f"{self}: exited with status {done.returncode}")
        return done.stdout

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"

    def __repr__(self) -> str:
        return f"SecretRef({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


def _decode_custom(kind: type, value: Any) -> Any:
    """msgspec's hook for the types it does not know: only :class:`SecretRef` here."""
    if kind is SecretRef:
        if isinstance(value, SecretRef):
            return value
        if not isinstance(value, str):
            raise TypeError("expected a secret reference string")
        return SecretRef.parse(value)  # its ValueError never quotes the value
    raise NotImplementedError(kind)


def _check_custom(kind: type, value: Any) -> Any:
    """The hook for checking built structs: a reference must already be a :class:`SecretRef`."""
    if kind is SecretRef and not isinstance(value, SecretRef):
        raise TypeError("expected a SecretRef")
    return _decode_custom(kind, value)


def _encode_custom(value: Any) -> Any:
    if isinstance(value, SecretRef):
        return str(value)
    raise NotImplementedError(type(value))


def _is_boolean(kind: Any) -> bool:
    """``bool``, ``bool | None``, either ``Annotated``."""
    if typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    return kind is bool or (
        typing.get_origin(kind) in (typing.Union, types.UnionType)
        and set(typing.get_args(kind)) == {bool, type(None)}
    )


@functools.cache
def _field_types(cls: type[BackendSettings]) -> tuple[tuple[str, Any], ...]:
    return tuple((field.name, field.type) for field in msgspec.structs.fields(cls))


def _lax_booleans(cls: type[BackendSettings], table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` with yes/no/on/off strings of boolean fields made booleans."""
    data = dict(table)
    words = [key for key, value in data.items() if isinstance(value, str)]
    if words:
        kinds = dict(_field_types(cls))
        for key in words:
            if _is_boolean(kinds.get(key)):
                word = data[key].strip().lower()
                data[key] = True if word in _TRUE else False if word in _FALSE else data[key]
    return data


def _chomp(data: bytes) -> bytes:
    """Drop exactly one line ending: a file saved on Windows must give the same secret."""
    for ending in (b"\r\n", b"\n"):
        if data.endswith(ending):
            return data[: -len(ending)]
    return data


def _read_private_file(path: Path, label: str) -> bytes:
    """Read a secret file, refusing one that others could read or replace."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise SecretSourceError(
                    f"{label}: file is accessible to group or others; chmod 600 it"
                )
            if info.st_uid != os.geteuid():
                raise SecretSourceError(f"{label}: file is not owned by the current user")
            return handle.read()
    except FileNotFoundError:
        raise KeyLockedError(f"{label}: file does not exist") from None
    except PermissionError:
        raise SecretSourceError(f"{label}: file is not readable") from None
    except OSError as exc:
        raise SecretSourceError(f"{label}: cannot read ({exc.strerror})") from None
