"""Settings of the ``postgresql`` server storage, and the connection arguments they give.

Credentials are secret references only: either ``dsn`` (a whole libpq
connection string, which may hold a password) or ``host`` and the rest
with an optional ``password``.  A string that does not parse is refused
without quoting it, since it may hold the password.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from msgspec import Meta

from strongroom.errors import ServerStorageError
from strongroom.settings import BackendSettings, SecretRef

__all__ = ["PostgresServerStorageSettings", "connection_arguments"]

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresServerStorageSettings(BackendSettings, frozen=True, kw_only=True):
    """How to reach PostgreSQL, and how many connections this process keeps."""

    dsn: SecretRef | None = None
    host: Annotated[str, Meta(description="host name, address, or socket directory")] = ""
    port: Annotated[int, Meta(ge=1, le=65535, description="server port")] = 5432
    dbname: Annotated[str, Meta(min_length=1, description="database (must exist)")] = "strongroom"
    user: Annotated[str, Meta(min_length=1, description="role to log in as")] = "strongroom"
    password: SecretRef | None = None
    sslmode: Annotated[SslMode, Meta(description="libpq sslmode for host connections")] = "prefer"
    pool_min: Annotated[int, Meta(ge=0, le=100, description="connections kept open")] = 1
    pool_max: Annotated[int, Meta(ge=1, le=1000, description="connections at most")] = 10
    connect_timeout: Annotated[
        float, Meta(gt=0, le=300, description="seconds to connect, or to wait for a connection")
    ] = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.dsn is None) == (not self.host):
            _refuse("host", "set exactly one of dsn, or host (with port, dbname, user, password)")
        if self.dsn is not None and self.password is not None:
            _refuse("password", "a dsn carries its own password")
        if self.pool_min > self.pool_max:
            _refuse("pool_min", "expected at most pool_max")

    def where(self) -> str:
        """The server, for messages: never the dsn's text, which may hold a password."""
        if self.dsn is not None:
            return f"named by the dsn in {self.dsn}"
        return f"at {self.host} port {self.port} database {self.dbname}"


def connection_arguments(settings: PostgresServerStorageSettings) -> dict[str, object]:
    """Keyword arguments for ``psycopg.connect``, secrets resolved now.

    :raises strongroom.errors.ServerStorageError: the dsn does not parse.
    :raises strongroom.errors.KeyLockedError: a secret reference has nothing to read.
    :raises strongroom.errors.SecretSourceError: a secret source is unusable.
    """
    from psycopg.conninfo import conninfo_to_dict

    timeout = max(2, math.ceil(settings.connect_timeout))  # libpq's minimum is 2 s
    arguments: dict[str, object]
    if settings.dsn is not None:
        try:
            arguments = dict(conninfo_to_dict(settings.dsn.resolve().decode()))
        except Exception:  # its message would quote the dsn, password and all
            raise ServerStorageError(
                f"the dsn in {settings.dsn} is not a connection string"
            ) from None
    else:
        arguments = {
            "host": settings.host,
            "port": settings.port,
            "dbname": settings.dbname,
            "user": settings.user,
            "sslmode": settings.sslmode,
        }
        if settings.password is not None:
            arguments["password"] = settings.password.resolve().decode()
    arguments.setdefault("connect_timeout", timeout)
    arguments.setdefault("application_name", "strongroom-server")
    return arguments


def _refuse(key: str, message: str) -> None:
    """Raise as msgspec does for one field, so the config error names the key."""
    raise ValueError(f"{message} - at `$.{key}`")
