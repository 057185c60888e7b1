"""``strongroom encrypt`` and ``decrypt``: files in the chunked format, streamed.

Files are encrypted under the account's ``files`` keyset and bound to the
account (not to a file name, so they can be renamed).  Decryption writes
only authenticated chunks.  A regular output file appears only once the
whole input has verified, so on failure none exists; stdout and devices
(``/dev/null``, a FIFO) are written in place as chunks verify (see
``strongroom.cli._io``).
"""

from __future__ import annotations

import os

from strongroom.cli._io import Input, check_output, output, reading
from strongroom.cli._output import emit
from strongroom.cli._progress import Progress
from strongroom.cli._session import opened

# The formats are imported once the account is unlocked: a command that
# cannot unlock stops before paying for them.
TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse

    from strongroom._stack import Strongroom
    from strongroom.formats import KeyFor
    from strongroom.formats.context import Context

PURPOSE = "files"


def encrypt(args: argparse.Namespace) -> int:
    check_output(args.target)
    with reading(args.source) as source, opened(args) as stack:
        from strongroom.formats.chunked import encrypt_stream

        key = stack.keys.data_key(PURPOSE)
        with output(args.target) as target:
            quiet = target.is_stdout
            progress = Progress("encrypting", size_of(source))
            encrypt_stream(
                Counting(source, progress),
                target,
                key.suite,
                key.material.view(),
                key.version,
                file_context(stack),
            )
            progress.finish()
    if not quiet:  # the output is stdout: the data alone goes there
        emit(args, {"encrypted": args.target}, [f"encrypted {args.source} -> {args.target}"])
    return 0


def decrypt(args: argparse.Namespace) -> int:
    check_output(args.target)
    with reading(args.source) as source, opened(args) as stack, output(args.target) as target:
        from strongroom.formats.chunked import decrypt_stream

        quiet = target.is_stdout
        progress = Progress("decrypting", size_of(source))
        decrypt_stream(
            Counting(source, progress), target, known_versions(stack), file_context(stack)
        )
        progress.finish()
    if not quiet:
        emit(args, {"decrypted": args.target}, [f"decrypted {args.source} -> {args.target}"])
    return 0


def file_context(stack: Strongroom) -> Context:
    """What every file of the account is bound to."""
    from strongroom.formats.context import Context

    return Context(account=stack.config.account, store=PURPOSE, record="")


def known_versions(stack: Strongroom) -> KeyFor:
    """The ``files`` key lookup: a version the account never had is an altered file (exit 3)."""
    return stack.keys.key_lookup(PURPOSE)


def size_of(source: Input) -> int | None:
    """The input's size for the progress display, if it is a file."""
    try:
        return os.fstat(source.fileno()).st_size or None
    except (OSError, ValueError):
        return None


class Counting:
    """A reader that reports progress; forwards ``read`` and ``readinto``."""

    def __init__(self, inner: Input, progress: Progress) -> None:
        self._inner = inner
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._progress.advance(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int | None:
        count = self._inner.readinto(buffer)
        self._progress.advance(count or 0)
        return count
