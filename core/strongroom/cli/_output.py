"""Printing a command's result as text or as JSON."""

from __future__ import annotations

import json
import sys

from strongroom.cli._io import STDOUT, closed_stream, naming

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable
    from typing import Any


def emit(args: argparse.Namespace, data: Any, text: Iterable[str]) -> None:
    """Print ``data`` as JSON under ``--json``, else the ``text`` lines.

    :raises OSError: standard output is closed or cannot be written; it names it.
    """
    out = sys.stdout
    if out is None:
        raise closed_stream(STDOUT)
    with naming(STDOUT):
        if getattr(args, "json", False):
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        else:
            for line in text:
                print(line, file=out)
        out.flush()


def printable(key: str) -> str:
    """``key`` as one line that cannot steer a terminal: quoted and escaped if it needs it.

    A key holding a newline would otherwise read as two keys, and escape
    sequences would reach the terminal; ``--json`` gives every key exactly.
    A key starting with a quote is quoted too, so a quoted line is never a
    literal key.
    """
    if key.isprintable() and not key.startswith(("'", '"')):
        return key
    return repr(key)
