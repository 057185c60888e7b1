"""Command-line inputs and outputs: ``-`` for stdio, and outputs that appear only on success."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from strongroom._fs import fsync_dir, open_private, temp_path_for
from strongroom.errors import UsageError

CHUNK = 1 << 20


@contextlib.contextmanager
def reading(path: str) -> Iterator[BinaryIO]:
    """stdin for ``-``, else the named file.

    :raises UsageError: the file cannot be opened.
    """
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        yield handle


def chunks(source: BinaryIO) -> Iterator[bytes]:
    """Read ``source`` to the end in 1 MiB pieces."""
    while chunk := source.read(CHUNK):
        yield chunk


@contextlib.contextmanager
def writing_on_success(path: str) -> Iterator[BinaryIO]:
    """stdout for ``-``; else a file that exists at ``path`` only if the block succeeds.

    The bytes go to an anonymous file (``O_TMPFILE``) in the target's
    directory, with no name anyone could open, and it is linked into place
    after the block returns.  On failure nothing is left behind.  Where the
    file system lacks ``O_TMPFILE`` a private temporary name is used and
    removed on failure.

    :raises UsageError: the target's directory cannot be written.
    """
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path).absolute()
    try:
        fd = os.open(target.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        temp: Path | None = None
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
        temp = temp_path_for(target)
        fd = open_private(temp)
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            yield handle
            handle.flush()
            os.fsync(fd)
        staged = temp or temp_path_for(target)
        if temp is None:
            _link_anonymous(fd, staged)
        os.replace(staged, target)
        fsync_dir(target.parent)
    except BaseException:
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise
    finally:
        os.close(fd)


def _link_anonymous(fd: int, target: Path) -> None:
    """Give the ``O_TMPFILE`` file open as ``fd`` the name ``target``.

    open(2)'s recipe: ``linkat(AT_FDCWD, "/proc/self/fd/N", ..., AT_SYMLINK_FOLLOW)``.
    Plain ``os.link`` calls link(2), which on Linux does not follow that magic
    link and fails with ``EXDEV``; given a directory descriptor, it calls
    ``linkat`` with ``AT_SYMLINK_FOLLOW``.
    """
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(f"/proc/self/fd/{fd}", target.name, dst_dir_fd=directory, follow_symlinks=True)
    finally:
        os.close(directory)
