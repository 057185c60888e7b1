"""``get``, ``put``, ``rm``, ``ls`` and ``status`` served by a running unlock agent.

Tried before a record command imports the framework: when the agent for
this exact config runs, the command is a socket round trip and prints what
the agent returns, exactly as the command itself would.  Otherwise (or for
``put --blob``, which streams) the command unlocks and runs as usual.
"""

from __future__ import annotations

from strongroom.agent.client import Connection, connected
from strongroom.cli._io import reading, stdout
from strongroom.cli._output import emit, printable

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable


def run(target: str, args: argparse.Namespace) -> int | None:
    """The exit code of command ``target`` when the agent served it; None when no agent runs."""
    command = _COMMANDS.get(target)
    if command is None or getattr(args, "blob", False):
        return None
    with connected(args.config, args.account) as agent:
        return None if agent is None else command(agent, args)


def _get(agent: Connection, args: argparse.Namespace) -> int:
    out = stdout()
    for frame in agent.request("get", store=args.store, key=args.key):
        if frame.get("chunk"):
            out.write(frame["body"])
    out.flush()
    return 0


def _put(agent: Connection, args: argparse.Namespace) -> int:
    with reading(args.source) as source:
        data = source.read()
    for _ in agent.request("put", data, store=args.store, key=args.key):
        pass
    emit(args, {"stored": args.key, "store": args.store}, [f"stored {args.key!r} in {args.store}"])
    return 0


def _remove(agent: Connection, args: argparse.Namespace) -> int:
    for _ in agent.request("rm", store=args.store, key=args.key):
        pass
    emit(args, {"removed": args.key}, [f"removed {args.key!r} from {args.store}"])
    return 0


def _list(agent: Connection, args: argparse.Namespace) -> int:
    keys: list[str] = []
    for frame in agent.request("ls", store=args.store, prefix=args.prefix):
        keys = frame["keys"]
    emit(args, {"store": args.store, "keys": keys}, [printable(key) for key in keys])
    return 0


def _status(agent: Connection, args: argparse.Namespace) -> int:
    from strongroom.cli.status import show

    for frame in agent.request("status"):
        show(args, frame["status"])
    return 0


_COMMANDS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "records:get": _get,
    "records:put": _put,
    "records:remove": _remove,
    "records:list_keys": _list,
    "status:run": _status,
}
