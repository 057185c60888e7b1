"""Printing a command's result as text or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any


def emit(args: argparse.Namespace, data: Any, text: Iterable[str]) -> None:
    """Print ``data`` as JSON under ``--json``, else the ``text`` lines."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for line in text:
            print(line)
