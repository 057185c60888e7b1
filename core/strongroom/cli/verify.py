"""``strongroom verify``: check a file made by ``encrypt`` without writing its plaintext.

Every chunk is authenticated in order and the end is checked, exactly as
``decrypt`` does, but each chunk's plaintext is dropped from memory once its
tag verifies: nothing reaches a file, a pipe or the terminal.
"""

from __future__ import annotations

from strongroom.cli._io import reading
from strongroom.cli._output import emit
from strongroom.cli._progress import Progress
from strongroom.cli._session import opened
from strongroom.cli.files import Counting, file_context, known_versions, size_of

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse


def run(args: argparse.Namespace) -> int:
    with reading(args.source) as source, opened(args) as stack:
        from strongroom.formats.chunked import decrypt_stream  # once unlocked

        progress = Progress("verifying", size_of(source))
        size = decrypt_stream(
            Counting(source, progress), _Discard(), known_versions(stack), file_context(stack)
        )
        progress.finish()
    emit(
        args,
        {"verified": args.source, "plaintext_bytes": size},
        [f"verified {args.source}: every chunk is authentic and none is missing ({size} bytes)"],
    )
    return 0


class _Discard:
    """A sink that drops what it is given."""

    def write(self, data: memoryview) -> int:
        return len(data)
