"""A SQLAlchemy engine over a store's encrypted database, with no key in the application.

::

    from strongroom_contrib.sqlalchemy import create_engine

    engine = create_engine(stack, "vault")      # stack: an unlocked Strongroom

Each pooled connection comes from ``stack.open_database(store_name)``
(SQLAlchemy's ``creator=``), so it is keyed by strongroom under the
store's current key version.  After the store is re-keyed, a pooled
connection's next statement fails once with the store's
``DatabaseKeyError`` (wrapped by SQLAlchemy as ``DatabaseError``); the
engine treats that as a disconnect, so the whole pool is dropped and the
next checkout opens under the new key.  Needs the ``sqlalchemy`` and
``sqlcipher`` extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy
import sqlcipher3.dbapi2 as sqlcipher
from sqlalchemy import event

if TYPE_CHECKING:
    from strongroom import Strongroom

__all__ = ["create_engine"]


def create_engine(stack: Strongroom, store_name: str, **kwargs: Any) -> sqlalchemy.Engine:
    """An engine whose connections are ``stack.open_database(store_name)``.

    ``kwargs`` go to :func:`sqlalchemy.create_engine` (``echo``,
    ``pool_size``...); ``creator`` and ``module`` are this helper's.

    :raises strongroom.errors.UsageError: the store keeps no database, or
        ``kwargs`` names ``creator`` or ``module``.
    """
    from strongroom.errors import UsageError

    taken = sorted({"creator", "module"} & kwargs.keys())
    if taken:
        raise UsageError(f"create_engine() sets {', '.join(taken)} itself")
    database_path = getattr(stack.store(store_name), "database_path", None)
    if database_path is None:
        stack.open_database(store_name)  # raises the UsageError naming the store
    engine = sqlalchemy.create_engine(
        f"sqlite:///{database_path}",  # for the dialect and pool choice; never opened by it
        creator=lambda: stack.open_database(store_name),
        module=sqlcipher,
        **kwargs,
    )
    event.listen(engine, "handle_error", _rekeyed_is_a_disconnect)
    return engine


def _rekeyed_is_a_disconnect(context: Any) -> None:
    """A connection stranded by a re-key is dropped with its pool, like a lost server."""
    from strongroom.errors import KeyUnavailableError

    original = context.original_exception
    # re-keyed, or closed by the account's lock (KeyLockedError): the pool must not keep it
    if getattr(original, "rekeyed", False) or isinstance(original, KeyUnavailableError):
        context.is_disconnect = True
