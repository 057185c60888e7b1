"""The stores that hold a SQL database of their own, as ``migrate`` and ``database`` use them.

The core never names a plugin: a store qualifies by what it offers, a
``database_path`` and a ``connect()`` giving a keyed DB-API connection
(the ``sqlcipher`` store does), as for ``Strongroom.open_database``.  For
``database key`` a store may also offer ``database_key() -> (key, version)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from strongroom.cli._session import store_named
from strongroom.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from strongroom._stack import Strongroom


@runtime_checkable
class DatabaseStore(Protocol):
    """A store whose data is one encrypted SQL database file."""

    @property
    def database_path(self) -> Path:
        """The database file."""

    def connect(self) -> Any:
        """A DB-API connection to it, keyed, in autocommit mode."""


def database_store(stack: Strongroom, name: str) -> DatabaseStore:
    """The store ``[stores.<name>]``, if it holds a database.

    :raises UsageError: no such store, or it is not a database store.
    """
    store = store_named(stack, name)
    if not isinstance(store, DatabaseStore):
        use = stack.config.choice(f"stores.{name}").use
        raise UsageError(
            f"store {name!r} ({use}) holds no SQL database; use a store that does, "
            "such as 'sqlcipher'"
        )
    return store
