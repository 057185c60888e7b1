"""Review finding: an engine's pooled connections stop at the lock and recover after unlock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import Strongroom, parse_config
from strongroom.errors import KeyLockedError

pytest.importorskip("sqlcipher3.dbapi2")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Strongroom]:
    config = parse_config(
        {
            "strongroom": {"data_dir": str(tmp_path / "data"), "account": "alice"},
            "stores": {"vault": {"use": "sqlcipher"}},
        },
        source="test",
        environ={},
    )
    with Strongroom(config, secrets={"main": "review passphrase 5a1e"}) as built:
        built.initialise()
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
