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
    from collections.abc import Sequence
    from typing import NoReturn

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
    """The full parser; subcommand modules are imported only when run."""
    import argparse

    from strongroom import __version__
    from strongroom.errors import UsageError

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see '{self.prog} --help')")

    # Options accepted both before and after the subcommand; SUPPRESS keeps a
    # subcommand's absent option from overwriting the global one.
    common = Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $STRONGROOM_CONFIG, then ./strongroom.toml)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output",
    )

    parser = Parser(
        prog=PROG,
        description="Secure offline-first application data at rest and in transit.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage or config error, "
        "3 integrity or authentication failure, 4 key unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--config", metavar="PATH", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    plugins = commands.add_parser(
        "plugins", parents=[common], help="list every slot's installed backends"
    )
    plugins.add_argument(
        "--check", action="store_true", help="import each backend; fail if any cannot load"
    )
    plugins.set_defaults(run=_run("strongroom.cli.plugins"))

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    check = config_commands.add_parser(
        "check", parents=[common], help="validate the config and print the resolved stack"
    )
    check.set_defaults(run=_run("strongroom.cli.config_check"))

    demo = commands.add_parser(
        "demo", parents=[common], help="walk through the embedded default stack"
    )
    demo.set_defaults(run=_run("strongroom.cli.demo"))
    return parser


def _run(module: str) -> object:
    """A handler that imports ``module`` and calls its ``run(args)`` only when chosen."""

    def run(args: argparse.Namespace) -> int:
        from importlib import import_module

        code: int = import_module(module).run(args)
        return code

    return run


if __name__ == "__main__":
    sys.exit(main())
