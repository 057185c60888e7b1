"""Review finding: ``database key`` checks the printed key against the store's file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.cli import database
from strongroom.errors import IntegrityError

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")
from strongroom_plugins.sqlcipher.connection import connect  # noqa: E402

KEY = bytes(range(32))


@pytest.mark.parametrize("awkward", ["a#b", "a?b", "a%23b"])
def test_a_wrong_key_is_caught_whatever_the_path_holds(tmp_path: Path, awkward: str) -> None:
    directory = tmp_path / awkward
    directory.mkdir()
    path = directory / "store.db"
    conn = connect(path, KEY)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(IntegrityError):
        database._verify(path, bytes(32), [])  # not the key: nothing may be printed
    database._verify(path, KEY, [])  # the right key opens that very file

    assert sorted(tmp_path.rglob("*")) == before  # no other file opened or created
