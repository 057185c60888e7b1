"""Moving a blob's chunks between the caller and the ``files`` store.

The caller's iterable is consumed deep inside the store's write path,
whose handlers clean up and turn ``OSError`` into ``StoreError``.
:func:`pull` wraps whatever the iterable raises in :class:`SourceFailed`,
so no handler mistakes it for a failure of the store's own, and
``put_blob`` re-raises the original untouched.  :func:`stream` closes the
blob's file however the caller stops reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, TypeVar

from strongroom.formats import ChunkedReader

__all__ = ["SourceFailed", "pull", "stream"]

T = TypeVar("T")


class SourceFailed(Exception):
    """Carries an exception raised by the caller's chunk iterable past our own handlers."""

    def __init__(self, original: Exception) -> None:
        super().__init__("the blob's source failed")
        self.original = original


def pull(chunks: Iterable[T]) -> Iterator[T]:
    """The caller's chunks or items; what their iterable raises is wrapped in SourceFailed."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise SourceFailed(exc) from exc
        yield chunk


def stream(reader: ChunkedReader, handle: BinaryIO) -> Iterator[bytes]:
    """The blob's verified chunks; ``handle`` is closed when the caller stops."""
    try:
        yield from reader.iter_chunks()
    finally:
        handle.close()
