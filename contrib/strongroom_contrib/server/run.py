"""``strongroom serve``: the sync server under uvicorn, over TLS, from a config's ``[server]``.

:func:`serve` checks what it can before uvicorn starts (the table, the
certificate and key, the secret, the storage and nonce cache), so a
mistake is one line and an exit code, then runs uvicorn: one process, or
``workers`` processes that each build the app from the same config
(:func:`worker_app`, found through ``$STRONGROOM_CONFIG``).  uvicorn stops
on SIGTERM or SIGINT gracefully: it stops accepting, lets in-flight
requests finish, then returns; SIGTERM then ends the command with 0.
"""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strongroom import Strongroom, harden_process, load_config
from strongroom.config import BUILTIN_SOURCE, Config, ServerTable
from strongroom.errors import ConfigError, StrongroomError, UsageError
from strongroom_contrib.server.app import App, create_app
from strongroom_contrib.server.logs import log_config

__all__ = ["app_from_config", "serve", "worker_app"]

CONFIG_VARIABLE = "STRONGROOM_CONFIG"


def server_table(config: Config) -> ServerTable:
    """The ``[server]`` table.

    :raises strongroom.errors.ConfigError: there is none.
    """
    if config.server is None:
        raise ConfigError("no [server] table: strongroom serve needs one", source=config.source)
    return config.server


def app_from_config(stack: Strongroom) -> App:
    """The app over the stack's ``[server_storage]`` and ``[nonce_cache]``, both opened now.

    :raises strongroom.errors.StrongroomError: a table is missing or a backend cannot start.
    """
    table = server_table(stack.config)
    secret = None
    if table.secret is not None:
        secret = table.secret.resolve()
        if len(secret) < 32:
            raise ConfigError(
                "the challenge-token secret must be at least 32 bytes",
                source=stack.config.source,
                location="[server] key 'secret'",
            )
    return create_app(
        stack.server_storage,
        stack.nonce_cache,
        window=table.window,
        max_body_bytes=table.max_body_bytes,
        challenge_secret=secret,
    )


def worker_app() -> App:
    """uvicorn's app factory in each worker process: the config ``$STRONGROOM_CONFIG`` names.

    A spawned worker is a new process: it is hardened as the command was
    (no core dump, no same-user ptrace) before it reads a secret.
    """
    harden_process()
    stack = Strongroom(load_config())
    return app_from_config(stack)


def serve(config: Config, *, workers: int = 1) -> int:
    """Serve until SIGTERM (exit 0) or SIGINT (``KeyboardInterrupt``); see the module docstring.

    :raises strongroom.errors.StrongroomError: the config, certificate, secret or a backend
        is unusable.
    """
    import uvicorn

    from strongroom_contrib.server._nodelay import NoDelayH11Protocol

    table = server_table(config)
    if workers < 1:
        raise UsageError("--workers is at least 1")
    certfile, keyfile = (_beside(config, name) for name in (table.certfile, table.keyfile))
    _check_tls(certfile, keyfile)
    options: dict[str, Any] = {
        "host": table.host,
        "port": table.port,
        "ssl_certfile": str(certfile),
        "ssl_keyfile": str(keyfile),
        "log_config": log_config(),
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "lifespan": "on",
        "ws": "none",
        "http": NoDelayH11Protocol,  # see _nodelay: uvicorn's workers leave Nagle on
    }
    if workers > 1:
        _check_workers(config, table)
    with Strongroom(config) as stack:
        app = app_from_config(stack)  # every backend opened once: a mistake is one line
        with _sigterm_ends_cleanly(), _startup_failure_is_one_line(table):
            if workers == 1:
                uvicorn.run(app, **options)
            else:
                if config.source != BUILTIN_SOURCE and not config.source.startswith("$"):
                    os.environ[CONFIG_VARIABLE] = str(Path(config.source).resolve())
                uvicorn.run(
                    "strongroom_contrib.server.run:worker_app",
                    factory=True,
                    workers=workers,
                    **options,
                )
    return 0


@contextmanager
def _startup_failure_is_one_line(table: ServerTable) -> Iterator[None]:
    """uvicorn exits 3 when it cannot start (a port in use): make that exit 1, in one line."""
    try:
        yield
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise StrongroomError(
            f"the server could not start on {table.host} port {table.port} "
            "(the log line above says why)"
        ) from None


def _check_workers(config: Config, table: ServerTable) -> None:
    """:raises strongroom.errors.ConfigError: the workers would not share their state."""
    if config.choice("nonce_cache").use == "memory":
        raise ConfigError(
            'several workers need a shared nonce cache (use = "redis"): each worker\'s '
            "memory would accept a replayed request once",
            source=config.source,
            location="[nonce_cache] key 'use'",
        )
    if table.secret is None:
        raise ConfigError(
            "several workers need a shared secret for challenge tokens",
            source=config.source,
            location="[server] key 'secret'",
        )


def _beside(config: Config, name: str) -> Path:
    """``name``, relative to the config file's directory when it is relative."""
    path = Path(name).expanduser()
    if path.is_absolute() or config.source == BUILTIN_SOURCE or config.source.startswith("$"):
        return path
    return Path(config.source).parent / path


def _check_tls(certfile: Path, keyfile: Path) -> None:
    """:raises strongroom.errors.UsageError: the chain and key do not load together."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as exc:
        raise UsageError(
            f"[server] certfile {certfile} and keyfile {keyfile}: {exc.strerror or 'unusable'}"
        ) from None
    except ssl.SSLError as exc:
        raise UsageError(
            f"[server] certfile {certfile} and keyfile {keyfile} do not load: "
            f"{exc.reason or 'invalid'}"
        ) from None


@contextmanager
def _sigterm_ends_cleanly() -> Iterator[None]:
    """uvicorn raises a caught SIGTERM again after its graceful shutdown: let that be a no-op."""
    previous = signal.signal(signal.SIGTERM, lambda _signal, _frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
