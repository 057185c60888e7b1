"""The ``strongroom`` command: parsing, dispatch, and the error-to-exit-code map.

Exit codes (``docs/cli.md``): 0 ok, 1 other failure, 2 usage or config
error, 3 integrity or authentication failure, 4 key unavailable, 130
interrupted.  Expected errors print one line to stderr, never a traceback.

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
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in == ["--version"]:  # answered before argparse is even imported
        from strongroom import __version__

        print(f"{PROG} {__version__}")
        return EXIT_OK

    from strongroom.errors import StrongroomError

    try:
        args = build_parser().parse_args(args_in)
        result: int = args.run(args)
    except StrongroomError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout went away (``strongroom plugins | head``): not our failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        # the type only: an unexpected error's message could quote data
        _error(f"internal error ({type(exc).__name__}); set {DEBUG_ENV}=1 for a traceback")
        return EXIT_FAILURE
    return result


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; command modules are imported only when their command runs."""
    import argparse

    from strongroom import __version__
    from strongroom.errors import UsageError

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see '{self.prog} --help')")

    # Options accepted both before and after the command; SUPPRESS keeps a
    # command's absent option from overwriting the global one.
    common = Parser(add_help=False)
    for flags, options in _COMMON_OPTIONS:
        common.add_argument(*flags, default=argparse.SUPPRESS, **options)  # type: ignore[arg-type]

    parser = Parser(
        prog=PROG,
        description="Secure offline-first application data at rest and in transit.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage or config error, "
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
    return parser


def _data_commands(commands: Any, command: Callable[..., Any]) -> None:
    command(commands, "init", "init:run", "create the account's keys and stores from the config")
    command(commands, "status", "status:run", "show the stack, key versions and providers")
    put = command(commands, "put", "records:put", "store a record (or a streamed blob)")
    put.add_argument("store")
    put.add_argument("key")
    put.add_argument("source", nargs="?", default="-", metavar="FILE", help="default: stdin")
    put.add_argument("--blob", action="store_true", help="stream it in chunks (large files)")
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
        crypt.add_argument("target", metavar="OUT", help="a file, or - for stdout")


def _key_commands(commands: Any, command: Callable[..., Any]) -> None:
    keys = commands.add_parser("keys", help="list, rotate, re-encrypt, retire, destroy keys")
    key_commands = keys.add_subparsers(metavar="ACTION", required=True)
    command(key_commands, "list", "keys:list_keys", "list keysets and their versions")
    rotate = command(key_commands, "rotate", "keys:rotate", "rotate data keys (default: all)")
    which = rotate.add_mutually_exclusive_group()
    which.add_argument("--purpose", help="rotate one keyset, e.g. store:notes")
    which.add_argument("--master", action="store_true", help="replace the master key")
    which.add_argument("--provider", metavar="NAME", help="wrap the master key afresh")
    command(key_commands, "reencrypt", "keys:reencrypt", "re-encrypt old data (resumable)")
    for verb in ("retire", "destroy"):
        change = command(key_commands, verb, f"keys:{verb}", f"{verb} one key version")
        change.add_argument("purpose")
        change.add_argument("version", type=int)

    providers = commands.add_parser("providers", help="list, add or remove key providers")
    provider_commands = providers.add_subparsers(metavar="ACTION", required=True)
    command(provider_commands, "list", "providers:list_providers", "show configured providers")
    for verb in ("add", "remove"):
        change = command(provider_commands, verb, f"providers:{verb}", f"{verb} a provider")
        change.add_argument("name", help="a [key_providers.<name>] from the config")


def _other_commands(commands: Any, command: Callable[..., Any]) -> None:
    wipe = command(commands, "wipe", "wipe:run", "destroy the account's keys, then its data")
    wipe.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    command(
        commands, "plugins", "plugins:run", "list every slot's installed backends"
    ).add_argument(
        "--check", action="store_true", help="import each backend; fail if any cannot load"
    )
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    command(config_commands, "check", "config_check:run", "validate the config and show the stack")
    command(commands, "demo", "demo:run", "walk through the embedded default stack")


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

        code: int = getattr(import_module(f"strongroom.cli.{module}"), function)(args)
        return code

    return run


if __name__ == "__main__":
    sys.exit(main())
