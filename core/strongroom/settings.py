"""Typed settings that backends declare, and references to secrets.

Every backend class names a ``Settings`` model (a :class:`BackendSettings`
subclass).  The config loader validates the backend's table against it, so a
typo or a wrong type is reported with the file, table and key.  Unknown keys
are refused, not ignored.

Secrets never sit in a config file.  A setting that needs one is typed
:class:`SecretRef` and holds a reference to where the secret lives::

    env:NAME            an environment variable
    file:/path          a file readable by its owner only (mode 0600 or stricter)
    command:prog args   the standard output of a program (run without a shell)
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from strongroom.errors import SecretSourceError

__all__ = ["BackendSettings", "NoSettings", "SecretRef"]


class BackendSettings(BaseModel):
    """Base for a backend's settings: immutable, and unknown keys are errors.

    Validation errors never quote the input, which may be a misplaced secret.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class NoSettings(BackendSettings):
    """For backends that take no settings: any key in their table is an error."""


class SecretRef:
    """Where a secret comes from; resolving it reads the secret.

    The repr and ``str`` show the reference (``env:NAME``), which is not secret.
    """

    SCHEMES: ClassVar[tuple[str, ...]] = ("env", "file", "command")
    _COMMAND_TIMEOUT_S: ClassVar[float] = 30.0

    __slots__ = ("scheme", "target")

    def __init__(self, scheme: str, target: str) -> None:
        if scheme not in self.SCHEMES or not target:
            raise ValueError(f"unsupported secret reference scheme {scheme!r}")
        self.scheme = scheme
        self.target = target

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

        :raises SecretSourceError: the variable is unset, the file is missing
            or readable by others, or the command failed.
        """
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretSourceError(f"{self}: environment variable is not set")
            return _chomp(value.encode())
        if self.scheme == "file":
            return _chomp(_read_private_file(Path(self.target).expanduser(), str(self)))
        return _chomp(self._run_command())

    def _run_command(self) -> bytes:
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

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            if not isinstance(value, str):
                raise PydanticCustomError("secret_ref", "expected a secret reference string")
            try:
                return cls.parse(value)
            except ValueError as exc:
                raise PydanticCustomError("secret_ref", str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.to_string_ser_schema()
        )


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
        raise SecretSourceError(f"{label}: file does not exist") from None
    except PermissionError:
        raise SecretSourceError(f"{label}: file is not readable") from None
    except OSError as exc:
        raise SecretSourceError(f"{label}: cannot read ({exc.strerror})") from None
