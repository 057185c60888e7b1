"""SQLite's errors turned into strongroom's, naming the store and never SQLite's wording.

"database is locked" and "file is not a database" mean nothing to an
operator; the store's name and what to do about it do.  SQLite's own
message is not repeated (only its error name), so nothing it quotes from
the schema or a statement reaches a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import IntegrityError, StoreError, StrongroomError

if TYPE_CHECKING:
    import sqlcipher3.dbapi2 as sqlcipher

__all__ = ["StoreBusyError", "is_busy", "is_key_failure", "is_read_only", "translate"]

_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_NOT_A_DATABASE = 26  # SQLITE_NOTADB: the key does not open the page, or it was altered
_CORRUPT = 11
_FULL = 13
_IO_ERROR = 10
_READ_ONLY = 8  # what SQLCipher answers a write on a connection whose pages stopped opening


class StoreBusyError(StoreError):
    """Another connection held the database's write lock past the store's busy timeout."""


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite giving up on a lock another connection holds."""
    return _code(exc) in _BUSY


def is_key_failure(exc: BaseException) -> bool:
    """Whether a page failed to decrypt: a re-key elsewhere, another key, or damage."""
    return _code(exc) in (_NOT_A_DATABASE, _CORRUPT)


def is_read_only(exc: BaseException) -> bool:
    """Whether SQLite refused a write as read-only (after a page failed to open, too)."""
    return _code(exc) == _READ_ONLY


def translate(exc: sqlcipher.Error, store: str, doing: str) -> StrongroomError:
    """The strongroom error for ``exc``, raised while the store ``store`` was ``doing``."""
    code = _code(exc)
    if code in _BUSY:
        return StoreBusyError(
            f"store {store!r} is busy: another process held its database past the busy "
            f"timeout while this one was {doing}; try again (or raise busy_timeout)"
        )
    if code in (_NOT_A_DATABASE, _CORRUPT):
        return IntegrityError(
            f"store {store!r}: its database failed verification while {doing} "
            "(a damaged, truncated or replaced file)"
        )
    if code in (_FULL, _IO_ERROR):
        return StoreError(
            f"store {store!r}: its database could not be written while {doing} (a full "
            "disk or an I/O error); that change was not made, earlier data is intact"
        )
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return StoreError(f"store {store!r}: the database refused {doing} ({name})")
