"""The ``postgresql`` server storage against a real PostgreSQL 15: the contract, settings, secrets.

One cluster serves the module (``tests/postgres.py``); each contract test
starts from emptied tables.  Restarts and several processes are in
``test_server_storage_postgresql_service.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from postgres import PASSWORD, Postgres, running_postgres
from strongroom import Strongroom
from strongroom.config import parse_config
from strongroom.errors import ConfigError, ServerStorageError, ServerStorageUnavailableError
from strongroom.server_storage import ServerStorage
from strongroom.settings import SecretRef
from strongroom.testing import ServerStorageContract
from strongroom_plugins.server_stores.postgresql import PostgresServerStorage

TABLES = "strongroom_objects, strongroom_chunks, strongroom_uploads, strongroom_accounts"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


def open_postgres(table: dict[str, Any]) -> PostgresServerStorage:
    return PostgresServerStorage(PostgresServerStorage.Settings.from_table(table))


class TestPostgresServerStorage(ServerStorageContract):
    @pytest.fixture(autouse=True)
    def _empty(self, postgres: Postgres) -> None:
        self.table = postgres.settings("postgres")
        with postgres.admin() as conn:
            exists = conn.execute("SELECT to_regclass('strongroom_devices')").fetchone()
            if exists is not None and exists[0] is not None:
                conn.execute(f"TRUNCATE {TABLES}, strongroom_devices")

    def open_storage(self) -> ServerStorage:
        return open_postgres(self.table)


def dsn_reference(dsn: str) -> SecretRef:
    return SecretRef("env", "SERVER_DSN", environ={"SERVER_DSN": dsn})


def test_settings_take_exactly_one_way_in() -> None:
    settings = PostgresServerStorage.Settings
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        settings.from_table({})
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        settings.from_table({"dsn": "env:DSN", "host": "db"})
    with pytest.raises(msgspec.ValidationError, match="own password"):
        settings.from_table({"dsn": "env:DSN", "password": "env:PW"})
    with pytest.raises(msgspec.ValidationError, match="pool_max"):
        settings.from_table({"host": "db", "pool_min": 5, "pool_max": 2})


def test_a_literal_password_or_dsn_in_the_config_is_refused() -> None:
    for table in (
        {"use": "postgresql", "host": "db", "password": "hunter2"},
        {"use": "postgresql", "dsn": "postgresql://u:hunter2@db/x"},
    ):

        def load(table: dict[str, str] = table) -> None:
            config = parse_config({"server_storage": table}, source="t.toml", environ={})
            Strongroom(config).resolve("server_storage")

        with pytest.raises(ConfigError) as refused:
            load()
        assert "hunter2" not in str(refused.value)


def test_the_dsn_password_never_shows(postgres: Postgres, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "dsn-secret-Zq81"  # noqa: S105 - planted, to be looked for
    wrong = (
        f"host={postgres.socket_dir} port=5432 user=strongroom password={secret} dbname=postgres"
    )
    unreachable = f"host={postgres.socket_dir} port=1 user=strongroom password={secret}"
    garbled = f"host=db password={secret} nonsense"
    unknown = f"host=db password={secret} colour=blue"
    for dsn in (wrong, unreachable, garbled, unknown):
        table = {"dsn": dsn_reference(dsn), "connect_timeout": 1.0}
        with pytest.raises(ServerStorageError) as refused:
            open_postgres(table)
        message = str(refused.value)
        assert secret not in message
        assert "\n" not in message
        assert "Traceback" not in message
        assert "env:SERVER_DSN" in message
        assert secret not in repr(PostgresServerStorage.Settings.from_table(table))
    assert secret not in caplog.text


def test_the_right_dsn_connects_and_hides_itself(postgres: Postgres) -> None:
    dsn = f"host={postgres.socket_dir} user=strongroom password={PASSWORD} dbname=postgres"
    with open_postgres({"dsn": dsn_reference(dsn)}) as storage:
        assert storage.pull("alice").entries == ()
        assert PASSWORD not in repr(storage)
        assert "env:SERVER_DSN" in repr(storage)


def test_an_unreachable_server_is_one_clear_line(postgres: Postgres) -> None:
    table = postgres.settings(port=1, connect_timeout=1.0)
    with pytest.raises(ServerStorageUnavailableError) as refused:
        open_postgres(table)
    message = str(refused.value)
    assert message.startswith("PostgreSQL at "), message
    assert "unavailable" in message
    assert PASSWORD not in message
    assert "\n" not in message


def test_the_stack_builds_the_configured_server_storage(postgres: Postgres) -> None:
    table = {key: str(value) for key, value in postgres.settings().items()}
    table["password"] = "env:PG_PASSWORD"  # noqa: S105 - a reference
    config = parse_config(
        {"server_storage": {"use": "postgresql", **table}},
        source="t.toml",
        environ={"PG_PASSWORD": PASSWORD},
    )
    with Strongroom(config) as stack:
        assert isinstance(stack.server_storage, PostgresServerStorage)
        assert stack.server_storage.pull("alice").entries == ()
