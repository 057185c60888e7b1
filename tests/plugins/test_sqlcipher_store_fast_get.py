"""``get``'s fast way keeps every guarantee of the general one.

``SqlcipherStore.get`` runs its statement straight away on a trusted
connection (``_runner``): these tests pin what that must not lose.  A page
that fails there is retried the general way and, if damaged, reported once
to the audit hook; key names are still checked; a ``forget`` that arrives
while it holds the guard is honoured, unless an outer operation of the same
thread still uses the connection; a connection renewed after a large batch
leaves the WAL as it was, and a renewal that cannot open drops the
connection without raising; the store's connection keeps few prepared
statements (``_runner.STATEMENTS``).
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3.dbapi2 as sqlcipher
from sqlcipher_support import bind, open_sqlcipher_store

from strongroom.audit import AuditEvent
from strongroom.errors import IntegrityError, KeyLockedError, UsageError
from strongroom.keys import AccountKeys
from strongroom_plugins.sqlcipher import store as store_module
from strongroom_plugins.sqlcipher._runner import STATEMENTS
from strongroom_plugins.sqlcipher.store import SqlcipherStore

PAGE = 4096
#: Each value fills most of a page: each record sits on a leaf page of its own.
VALUES = {name: bytes([index]) * 3000 for index, name in enumerate(("a", "b", "c", "d"))}


@pytest.fixture
def store(account_keys: AccountKeys) -> Iterator[SqlcipherStore]:
    with open_sqlcipher_store(bind(account_keys)) as opened:
        yield opened


class Failing:
    """A cursor whose statements fail as a page that does not decrypt does."""

    def execute(self, *_args: object) -> Any:
        error = sqlcipher.DatabaseError("file is not a database")
        error.sqlite_errorcode = 26  # SQLITE_NOTADB
        raise error


def test_a_statement_failing_the_fast_way_is_run_again_the_general_way(
    store: SqlcipherStore,
) -> None:
    store.put_many(VALUES.items())
    assert store.get("a") == VALUES["a"]
    runner = store._runner
    assert runner.cursor is not None  # trusted: the next get takes the fast way
    runner.cursor = Failing()
    assert store.get("b") == VALUES["b"]  # on the connection itself, the general way


def test_a_damaged_page_met_the_fast_way_is_refused_and_reported_once(
    account_keys: AccountKeys, tmp_path: Path
) -> None:
    with open_sqlcipher_store(bind(account_keys)) as store:
        store.put_many(VALUES.items())
        path = store.database_path
    pristine = tmp_path / "pristine.db"
    shutil.copyfile(path, pristine)
    # find a page that holds "d" alone: "a" still reads, then "d" is refused
    for page in range(1, pristine.stat().st_size // PAGE):
        data = bytearray(pristine.read_bytes())
        data[page * PAGE + 100] ^= 0x01
        path.write_bytes(bytes(data))
        events: list[AuditEvent] = []
        binding = dataclasses.replace(bind(account_keys), audit=events.append)
        with open_sqlcipher_store(binding) as store:
            try:
                assert store.get("a") == VALUES["a"]
            except IntegrityError:
                continue
            assert store._runner.cursor is not None  # trusted: "d" is read the fast way
            try:
                store.get("d")
            except IntegrityError:
                assert [event.action for event in events] == ["data.refused"]
                assert dict(events[0].details) == {"store": "vault", "error": "IntegrityError"}
                return
    pytest.fail("no page held 'd' alone")


def test_get_reports_its_own_refusals_and_is_not_wrapped_again() -> None:
    assert getattr(SqlcipherStore.get, "_audited", False)
    assert not hasattr(SqlcipherStore.get, "__wrapped__")  # no generic wrapper around it

    class Subclass(SqlcipherStore):
        def get(self, key: str) -> bytes:
            raise IntegrityError("altered")

    assert hasattr(Subclass.get, "__wrapped__")  # an override is wrapped as usual


@pytest.mark.parametrize("key", [b"bytes", None, 1, "\udfff", "x" * 65536, "é" * 32768])
def test_get_refuses_a_bad_key_name(store: SqlcipherStore, key: Any) -> None:
    store.put("k", b"v")
    assert store.get("k") == b"v"  # trusted: the fast way would run next
    with pytest.raises(UsageError):
        store.get(key)


@pytest.mark.parametrize("key", ["x" * 65535, "é" * 32767, "ключ", ""])
def test_get_takes_every_good_key_name(store: SqlcipherStore, key: str) -> None:
    store.put(key, b"v")
    assert store.get(key) == b"v"
    assert store.get(key) == b"v"  # the fast way too


def forget_from_another_thread(store: SqlcipherStore) -> None:
    """``forget`` as a lock or an idle timeout calls it, while this thread holds the guard."""
    thread = threading.Thread(target=store._runner.forget)
    thread.start()
    thread.join()
    assert store._runner.forget_pending


def test_a_forget_pending_when_a_read_ends_drops_the_connection(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    assert store.get("k") == b"v"
    runner = store._runner
    with runner.guard:  # as a read running when the keys went
        forget_from_another_thread(store)
        assert store.get("k") == b"v"
        assert runner.opened is None, "the key must leave SQLCipher's memory"
    assert not runner.forget_pending


def test_a_read_inside_another_operation_leaves_its_connection_open(
    store: SqlcipherStore,
) -> None:
    store.put("k", b"v")
    runner = store._runner
    seen: list[object] = []

    def work(conn: sqlcipher.Connection) -> None:
        forget_from_another_thread(store)
        assert store.get("k") == b"v"
        seen.append(runner.opened)
        conn.execute("SELECT 1").fetchall()  # the outer operation's connection still works

    runner.run("testing", work)
    assert seen[0] is not None, "the outer operation still used it"
    assert runner.opened is None  # dropped when the outer operation ended


def test_a_large_batch_renews_the_connection_and_keeps_the_wal(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    before = store._runner.opened
    store.put_many((f"r{index:05d}", b"x") for index in range(store_module._REOPEN_AFTER))
    after = store._runner.opened
    assert after is not None
    assert after is not before
    wal = store.database_path.with_name(store.database_path.name + "-wal")
    assert wal.stat().st_size > 0, "closing the last connection would have emptied it"
    assert store.get("r00000") == b"x"
    assert store.get("k") == b"v"


def test_a_renewal_that_cannot_open_drops_the_connection(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    store.binding.keys.lock()
    store._runner.renew()  # never raises: the put it follows succeeded
    assert store._runner.opened is None
    assert store._runner.cursor is None
    with pytest.raises(KeyLockedError):
        store.get("k")
    store.binding.keys.unlock()
    assert store.get("k") == b"v"


def test_the_stores_connection_keeps_few_prepared_statements(
    store: SqlcipherStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many kept statements use up its lookaside memory, and memory security slows the rest."""
    asked: list[object] = []
    real = sqlcipher.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("cached_statements"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlcipher, "connect", connect)
    store.put("k", b"v")  # the first use creates the file, then opens the store's connection
    store.put_many((f"r{index:05d}", b"x") for index in range(store_module._REOPEN_AFTER))
    store.connect().close()
    # opened, renewed after the batch, then the application's own connection, which keeps
    # sqlcipher3's default
    assert asked[-3:] == [STATEMENTS, STATEMENTS, None]
    for index in range(3 * STATEMENTS):  # more kinds of statement than it keeps: still right
        store.put(f"k{index}", bytes([index]))
        assert list(store.keys(f"k{index}")) == [f"k{index}"]
        assert store.get(f"k{index}") == bytes([index])
