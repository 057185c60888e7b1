"""``strongroom encrypt`` and ``decrypt``: files in the chunked format, streamed.

Files are encrypted under the account's ``files`` keyset and bound to the
account (not to a file name, so they can be renamed).  Decryption writes
only authenticated chunks, into an output that appears only once the whole
input has verified: on failure no output file exists.
"""

from __future__ import annotations

import argparse
import os
from typing import BinaryIO

from strongroom._stack import Strongroom
from strongroom.cipher_suite import CipherSuite
from strongroom.cli._io import reading, writing_on_success
from strongroom.cli._output import emit
from strongroom.cli._progress import Progress
from strongroom.cli._session import opened
from strongroom.errors import IntegrityError
from strongroom.formats.chunked import decrypt_stream, encrypt_stream
from strongroom.formats.context import Context
from strongroom.keys import KeyLookup

PURPOSE = "files"


def encrypt(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        key = stack.keys.data_key(PURPOSE)
        context = Context(account=stack.config.account, store=PURPOSE, record="")
        with reading(args.source) as source, writing_on_success(args.target) as target:
            progress = Progress("encrypting", _size(source))
            encrypt_stream(
                _Counting(source, progress),
                target,
                key.suite,
                key.material.view(),
                key.version,
                context,
            )
            progress.finish()
    if args.target != "-":
        emit(args, {"encrypted": args.target}, [f"encrypted {args.source} -> {args.target}"])
    return 0


def decrypt(args: argparse.Namespace) -> int:
    with opened(args) as stack:
        context = Context(account=stack.config.account, store=PURPOSE, record="")
        with reading(args.source) as source, writing_on_success(args.target) as target:
            progress = Progress("decrypting", _size(source))
            decrypt_stream(_Counting(source, progress), target, _known_versions(stack), context)
            progress.finish()
    if args.target != "-":
        emit(args, {"decrypted": args.target}, [f"decrypted {args.source} -> {args.target}"])
    return 0


def _known_versions(stack: Strongroom) -> KeyLookup:
    """The ``files`` key lookup, refusing a version the account never had.

    A header naming one was altered or made elsewhere: an integrity failure
    (exit 3), and no reason to create the keyset in an account that has none.
    """
    primary = stack.keys.primary_version(PURPOSE)
    lookup = stack.keys.key_lookup(PURPOSE)

    def known(version: int) -> tuple[CipherSuite, memoryview]:
        if primary is None or not 1 <= version <= primary:
            raise IntegrityError(
                f"the file names a {PURPOSE} key version that account "
                f"{stack.config.account!r} never had: it was altered or made elsewhere"
            )
        return lookup(version)

    return known


def _size(source: BinaryIO) -> int | None:
    try:
        return os.fstat(source.fileno()).st_size or None
    except (OSError, ValueError):
        return None


class _Counting:
    """A reader that reports progress; forwards ``read``, ``readinto`` and ``seekable``."""

    def __init__(self, inner: BinaryIO, progress: Progress) -> None:
        self._inner = inner
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._progress.advance(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self._inner.readinto(buffer)  # type: ignore[attr-defined]
        self._progress.advance(count or 0)
        return int(count or 0)

    def seekable(self) -> bool:
        return False
