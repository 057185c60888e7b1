"""The ``strongroom`` command: parsing, dispatch, and the error-to-exit-code map.

Exit codes (``docs/cli.md``): 0 ok, 1 other failure (among them an
``OSError`` from the medium: disk full, file too large, permission denied,
a closed standard stream), 2 usage or config error, 3 integrity or
authentication failure, 4 key unavailable, 130 interrupted.  Expected
errors print one line to stderr, never a traceback; an ``OSError`` prints
the path it names and the system's reason, nothing of the data.

Every command runs in a hardened process (:func:`strongroom.harden_process`:
no core dump, no same-user ptrace), set up after the arguments are parsed
and before any config, key or input is read.

Module-level imports stay minimal: ``--version`` and ``--help`` must not
pay for the framework, and no command imports a backend it does not use.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

PROG = "strongroom"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
DEBUG_ENV = "STRONGROOM_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    _reserve_standard_fds()
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in == ["--version"]:  # answered before argparse is even imported
        from strongroom import __version__

        print(f"{PROG} {__version__}")
        return EXIT_OK

    from strongroom._process import harden_process
    from strongroom.errors import StrongroomError

    try:
        args = build_parser().parse_args(args_in)
        harden_process()
        result: int = args.run(args)
    except StrongroomError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        if os.environ.get(DEBUG_ENV) and not _reader_left(exc):
            raise
        return _os_failure(exc)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        # the type only: an unexpected error's message could quote data
        _error(f"internal error ({type(exc).__name__}); set {DEBUG_ENV}=1 for a traceback")
        return EXIT_FAILURE
    return result


def _warnings_to_stderr() -> None:
    """Warnings the library logs reach the operator as ``strongroom: warning:`` lines.

    What hook plugins name in ``strongroom_redaction_patterns`` is masked in them.
    """
    import logging

    from strongroom.redaction import RedactingFilter

    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)


def _error(message: str) -> None:
    redaction = sys.modules.get("strongroom.redaction")  # loaded once a plugin could name patterns
    if redaction is not None:
        message = redaction.redact(message)
    if sys.stderr is not None:
        print(f"{PROG}: error: {message}", file=sys.stderr)


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s) it names and the system's reason, nothing else."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    if not paths:
        return f"input/output failed: {reason}"
    return f"{' -> '.join(paths)}: {reason}"


def _os_failure(exc: OSError) -> int:
    if _reader_left(exc):
        # stdout went away (``strongroom plugins | head``): not our failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return EXIT_OK
    _error(describe_os_error(exc))
    return EXIT_FAILURE


def _reader_left(exc: OSError) -> bool:
    """A broken pipe on standard output: whoever read it stopped (``| head``)."""
    return isinstance(exc, BrokenPipeError) and exc.filename in (None, "standard output")


def _reserve_standard_fds() -> None:
    """Put ``/dev/null`` on a closed descriptor 0, 1 or 2.

    Otherwise the next file opened would take its number, and a stray write
    meant for stdout could land in it.  ``sys.stdin``/``sys.stdout`` stay
    ``None``, so a command that needs the closed stream still fails.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; command modules are imported only when their command runs."""
    import argparse

    from strongroom import __version__
    from strongroom.errors import UsageError

    class Formatter(argparse.HelpFormatter):
        """argparse's formatter, sized without importing ``shutil`` (one per argument added)."""

        def __init__(self, prog: str) -> None:
            super().__init__(prog, width=_columns() - 2)

    class Parser(argparse.ArgumentParser):
        _intermixing = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", Formatter)
            super().__init__(*args, **kwargs)

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see '{self.prog} --help')")

        def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            """A command's options may stand between its operands (``put S K --blob FILE``)."""
            if self._subparsers is not None or self._intermixing:
                return super().parse_known_args(args, namespace)
            self._intermixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False

    # Options accepted both before and after the command; SUPPRESS keeps a
    # command's absent option from overwriting the global one.
    common = Parser(add_help=False)
    for flags, options in _COMMON_OPTIONS:
        common.add_argument(*flags, default=argparse.SUPPRESS, **options)  # type: ignore[arg-type]

    parser = Parser(
        prog=PROG,
        description="Secure offline-first application data at rest and in transit.",
        epilog="Exit codes: 0 ok, 1 failure (and I/O errors), 2 usage or config error, "
        "3 integrity or authentication failure, 4 key unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for flags, options in _COMMON_OPTIONS:
        parser.add_argument(*flags, **{**options, "help": argparse.SUPPRESS})  # type: ignore[arg-type]
    parser.set_defaults(config=None, json=False, account=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        group: argparse._SubParsersAction[Parser], name: str, target: str, help_text: str
    ) -> Parser:
        sub = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(run=_run(target))
        return sub

    _data_commands(commands, command)
    _key_commands(commands, command)
    _other_commands(commands, command)
    _database_commands(commands, command)
    _server_commands(commands, command)
    _sync_commands(commands, command)
    return parser


def _data_commands(commands: Any, command: Callable[..., Any]) -> None:
    command(commands, "init", "init:run", "create the account's keys and stores from the config")
    command(commands, "status", "status:run", "show the stack, key versions and providers")
    put = command(commands, "put", "records:put", "store a record (or a streamed blob)")
    put.add_argument("store")
    put.add_argument("key")
    put.add_argument("source", nargs="?", default="-", metavar="FILE", help="default: stdin")
    put.add_argument("--blob", action="store_true", help="stream it in chunks (large files)")
    many = command(
        commands, "put-many", "records:put_many", "store many records at once, all or nothing"
    )
    many.add_argument("store")
    many.add_argument(
        "source", nargs="?", default="-", metavar="FILE", help="JSON lines; default: stdin"
    )
    get = command(commands, "get", "records:get", "print a record or blob")
    get.add_argument("store")
    get.add_argument("key")
    remove = command(commands, "rm", "records:remove", "delete a record or blob")
    remove.add_argument("store")
    remove.add_argument("key")
    listing = command(commands, "ls", "records:list_keys", "list a store's keys")
    listing.add_argument("store")
    listing.add_argument("prefix", nargs="?", default="")

    for name, verb in (("encrypt", "encrypt"), ("decrypt", "decrypt")):
        crypt = command(commands, name, f"files:{verb}", f"{verb} a file (chunked format)")
        crypt.add_argument("source", metavar="IN", help="a file, or - for stdin")
        crypt.add_argument(
            "target", metavar="OUT", help="a file, a device or FIFO (written in place), or -"
        )
    verify = command(
        commands, "verify", "verify:run", "check an encrypted file fully, writing no plaintext"
    )
    verify.add_argument("source", metavar="FILE", help="a file, or - for stdin")


def _key_commands(commands: Any, command: Callable[..., Any]) -> None:
    keys = commands.add_parser("keys", help="list, rotate, re-encrypt, retire, destroy keys")
    key_commands = keys.add_subparsers(metavar="ACTION", required=True)
    command(key_commands, "list", "keys:list_keys", "list keysets and their versions")
    rotate = command(key_commands, "rotate", "keys:rotate", "rotate data keys (default: all)")
    rotate.add_argument("--purpose", help="rotate one keyset, e.g. store:notes")
    rotate.add_argument("--master", action="store_true", help="replace the master key")
    rotate.add_argument(
        "--provider",
        metavar="NAME",
        help="wrap the master key afresh (a new passphrase); with --master, also replace "
        "the master key and every data keyset's primary in the same change",
    )
    command(key_commands, "reencrypt", "keys:reencrypt", "re-encrypt old data (resumable)")
    for verb in ("retire", "destroy"):
        change = command(key_commands, verb, f"keys:{verb}", f"{verb} one key version")
        change.add_argument("purpose")
        change.add_argument("version", type=int)
        change.add_argument(
            "--force", action="store_true", help=f"{verb} it even if objects are still under it"
        )
    unreadable = command(
        key_commands, "unreadable", "keys:unreadable", "list objects no active key opens"
    )
    unreadable.add_argument("store", nargs="?", help="one store (default: all)")
    unreadable.add_argument("--purge", action="store_true", help="delete them")
    command(
        key_commands,
        "accept-rollback",
        "keys:accept_rollback",
        "keep a key record older than a provider last saw",
    )

    providers = commands.add_parser("providers", help="list, add or remove key providers")
    provider_commands = providers.add_subparsers(metavar="ACTION", required=True)
    command(provider_commands, "list", "providers:list_providers", "show configured providers")
    for verb in ("add", "remove"):
        change = command(provider_commands, verb, f"providers:{verb}", f"{verb} a provider")
        change.add_argument("name", help="a [key_providers.<name>] from the config")
    recover = command(
        commands, "recover", "recover:run", "open the account with its recovery key; re-enrol"
    )
    recover.add_argument(
        "--with", dest="recovery", metavar="NAME", help="the recovery provider (default: the one)"
    )
    recover.add_argument(
        "--enrol",
        action="append",
        default=[],
        metavar="NAME",
        help="wrap afresh for this provider, whose root was lost (repeatable)",
    )


def _other_commands(commands: Any, command: Callable[..., Any]) -> None:
    wipe = command(commands, "wipe", "wipe:run", "destroy the account's keys, then its data")
    wipe.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    purge = command(
        commands, "purge", "purge:run", "delete records older than their store's retention"
    )
    purge.add_argument("stores", nargs="*", metavar="STORE", help="default: every store with one")

    command(
        commands, "plugins", "plugins:run", "list every slot's installed backends"
    ).add_argument(
        "--check", action="store_true", help="import each backend; fail if any cannot load"
    )
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    command(config_commands, "check", "config_check:run", "validate the config and show the stack")
    command(commands, "demo", "demo:run", "walk through the default stack, then sync on loopback")
    unlock = command(
        commands, "unlock", "agent:unlock", "unlock once: start an agent that serves commands"
    )
    unlock.add_argument(
        "--foreground", action="store_true", help="serve in this process instead of detaching"
    )
    command(commands, "lock", "agent:lock", "make the agent wipe the keys and end")
    pin = command(
        commands, "pin", "pin:run", "print the SPKI pins of a server's chain or a PEM file"
    )
    pin.add_argument("target", nargs="?", metavar="HOST[:PORT]", help="port 443 by default")
    pin.add_argument("--cert", metavar="FILE", help="read PEM certificates instead of connecting")
    pin.add_argument(
        "--ca-bundle", metavar="FILE", help="trust only these CAs (default: the system's)"
    )
    pin.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default: 10")


def _database_commands(commands: Any, command: Callable[..., Any]) -> None:
    migrate = command(
        commands, "migrate", "migrate:run", "import a plaintext SQLite database into a store"
    )
    migrate.add_argument("source", metavar="PLAINTEXT.db", help="the SQLite database file")
    migrate.add_argument("--to", required=True, metavar="STORE", help="a store with a database")
    migrate.add_argument(
        "--keep-plaintext", action="store_true", help="do not remove the plaintext afterwards"
    )
    database = commands.add_parser("database", help="support access to a store's database")
    database_commands = database.add_subparsers(metavar="ACTION", required=True)
    key = command(
        database_commands,
        "key",
        "database:key",
        "print the PRAGMAs that open a store's database in the sqlcipher shell",
    )
    key.add_argument("store")
    key.add_argument("--expose-key", action="store_true", help="confirm: the raw key is printed")
    signing = commands.add_parser("signing", help="the key that signs this device's requests")
    signing_commands = signing.add_subparsers(metavar="ACTION", required=True)
    signing_key = command(
        signing_commands,
        "key",
        "signing:key",
        "print the request-signing key id and key, to provision the sync server",
    )
    signing_key.add_argument(
        "--key-version", type=int, default=None, metavar="N", help="default: the primary version"
    )
    signing_key.add_argument(
        "--expose-key", action="store_true", help="confirm: the raw key is printed"
    )


def _server_commands(commands: Any, command: Callable[..., Any]) -> None:
    serve = command(
        commands, "serve", "serve:run", "run the sync server ([server], TLS) until SIGTERM"
    )
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="server processes (default: 1)"
    )
    serve_commands = serve.add_subparsers(metavar="ACTION", required=False)
    devices = serve_commands.add_parser("devices", help="register, retire or list devices")
    device_commands = devices.add_subparsers(metavar="ACTION", required=True)
    add = command(
        device_commands, "add", "serve:devices_add", "register a device's request-signing key"
    )
    retire = command(
        device_commands, "retire", "serve:devices_retire", "stop a device from signing, for good"
    )
    for change in (add, retire):
        change.add_argument("account_name", metavar="ACCOUNT")
        change.add_argument("key_id", metavar="KEY_ID", help="as `signing key` prints it")
    add.add_argument(
        "--key-file",
        required=True,
        metavar="FILE",
        help="the base64 key `signing key --expose-key` printed, or - for stdin",
    )
    command(device_commands, "list", "serve:devices_list", "list devices (never their keys)")
    prune = command(
        serve_commands, "prune", "serve:prune", "drop blob uploads abandoned by their devices"
    )
    prune.add_argument(
        "--idle-days",
        type=float,
        default=7.0,
        metavar="DAYS",
        help="drop open uploads with no activity for this long (default: 7)",
    )


def _sync_commands(commands: Any, command: Callable[..., Any]) -> None:
    sync = command(
        commands, "sync", "sync:run", "push a store's outbox and changes, pull the server's"
    )
    sync.add_argument("--store", metavar="NAME", help="default: the one store configured")
    sync.add_argument("--new-key", action="store_true", help="make the sync key (first device)")
    sync.add_argument(
        "--export-key", metavar="FILE", help="write the sync key to a new file (- for stdout)"
    )
    sync.add_argument("--import-key", metavar="FILE", help="keep an exported sync key (- stdin)")
    sync.add_argument("--retry", metavar="ID", help="send a parked operation again")
    sync.add_argument("--drop", metavar="ID", help="remove a queued operation unsent")
    sync.add_argument(
        "--send-stale", action="store_true", help="with --retry: send it even past the retention"
    )


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, stdout, or 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


_COMMON_OPTIONS: list[tuple[tuple[str, ...], dict[str, object]]] = [
    (
        ("--config",),
        {"metavar": "PATH", "help": "config file (default: $STRONGROOM_CONFIG, ./strongroom.toml)"},
    ),
    (("--account",), {"metavar": "NAME", "help": "account to act on (default: from the config)"}),
    (("--json",), {"action": "store_true", "help": "machine-readable output"}),
]


def _run(target: str) -> object:
    """A handler that imports ``strongroom.cli.<module>`` only when its command is chosen."""
    module, _, function = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        from importlib import import_module

        if module in ("records", "status"):  # served by an unlock agent for this config
            from strongroom.cli._via_agent import run as via_agent

            served = via_agent(target, args)
            if served is not None:
                return served
        _warnings_to_stderr()  # after the agent's fast path, which logs nothing
        code: int = getattr(import_module(f"strongroom.cli.{module}"), function)(args)
        return code

    return run


if __name__ == "__main__":
    sys.exit(main())
