"""A SQLAlchemy engine's pooled connections stop at the account's lock and recover after unlock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlcipher_support import sqlcipher_stack

from strongroom import Strongroom
from strongroom.errors import KeyLockedError

pytest.importorskip("sqlcipher3.dbapi2")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Strongroom]:
    with sqlcipher_stack(tmp_path) as built:
        yield built


def test_an_engine_refuses_while_locked_and_recovers_after_unlock(stack: Strongroom) -> None:
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import text

    from strongroom_contrib.sqlalchemy import create_engine

    engine = create_engine(stack, "vault")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    stack.keys.lock()
    with pytest.raises(KeyLockedError), engine.connect() as conn:
        conn.execute(text("SELECT x FROM t"))
    stack.keys.unlock()
    with engine.connect() as conn:  # the pool dropped the closed connection
        assert conn.execute(text("SELECT x FROM t")).fetchall() == [(1,)]
    engine.dispose()
