"""``strongroom database key STORE --expose-key``: support access to a store's database.

What it prints must really open the file, in SQLCipher 4 (``sqlcipher3``)
and, as the docs say, not in Debian's packaged ``sqlcipher`` shell
(SQLCipher 3); it needs its flag, warns, is audited, and rotating then
re-encrypting makes the printed key worthless for the live file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_cli_data import Account
from test_cli_migrate_command import database_of, vault_account, vault_initialised

from conftest import MakeDistribution

__all__ = ["vault_account", "vault_initialised"]  # the fixtures

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")

RECORDER = """
import json, os
from strongroom.hookspecs import hookimpl

@hookimpl
def strongroom_audit_event(event):
    with open(os.environ["AUDIT_OUT"], "a") as out:
        out.write(json.dumps({"action": event.action, "details": dict(event.details)}) + "\\n")
"""


READ_THE_KEYS = "SELECT key FROM strongroom_records;\n"


def printed(account: Account) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        account.run("database", "key", "vault", "--expose-key", "--json").stdout
    )
    return data


def opens(path: Path, pragmas: list[str]) -> bool:
    conn = sqlcipher.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        for pragma in pragmas:
            conn.execute(pragma)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlcipher.DatabaseError:
        return False
    finally:
        conn.close()
    return True


def test_the_key_is_printed_only_with_its_flag(vault_account: Account) -> None:
    result = vault_account.run("database", "key", "vault", code=2)
    line = result.stderr.decode()
    assert "prints the raw key of the database of store 'vault'" in line
    assert "add --expose-key to confirm" in line
    assert result.stdout == b""
    assert "holds no SQL database" in vault_account.error(
        "database", "key", "notes", "--expose-key", code=2
    )


def test_the_printed_pragmas_open_the_database_and_it_is_audited(
    vault_account: Account, tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "audit-recorder",
        entry_points={"strongroom.plugins": {"recorder": "audit_recorder"}},
        modules={"audit_recorder": RECORDER},
    )
    heard = tmp_path / "audit.jsonl"
    env = {**vault_account.env, "PYTHONPATH": os.environ["PYTHONPATH"], "AUDIT_OUT": str(heard)}
    result = vault_account.run("database", "key", "vault", "--expose-key", env=env)
    text = result.stdout.decode().splitlines()
    database = database_of(vault_account)
    assert text[0] == f"-- store 'vault': sqlcipher {database}  (SQLCipher 4 or later)"
    assert text[1].startswith("PRAGMA key = \"x'")
    assert len(text[1]) == len("PRAGMA key = \"x'';") + 1 + 64
    assert "PRAGMA cipher_page_size = 4096;" in text
    assert "PRAGMA cipher_hmac_algorithm = HMAC_SHA512;" in text
    assert opens(database, text[1:])

    conn = sqlcipher.connect(str(database))
    for pragma in text[1:]:
        conn.execute(pragma)
    assert conn.execute("SELECT key FROM strongroom_records").fetchall() == [("own-record",)]
    conn.close()

    warning = result.stderr.decode()
    assert "the key of store 'vault' is exposed" in warning
    assert "strongroom keys rotate --purpose store:vault" in warning
    assert "strongroom keys reencrypt" in warning
    events = [json.loads(line) for line in heard.read_text().splitlines()]
    exposed = [event for event in events if event["action"] == "key.exposed"]
    assert exposed == [
        {
            "action": "key.exposed",
            "details": {"store": "vault", "purpose": "store:vault", "version": "1"},
        }
    ]
    assert text[1][16:80] not in heard.read_text()  # the event names the key, never holds it


def test_rotating_and_reencrypting_makes_the_printed_key_worthless(
    vault_account: Account,
) -> None:
    before = printed(vault_account)
    assert before["key_version"] == 1
    vault_account.run("keys", "rotate", "--purpose", "store:vault")
    vault_account.run("keys", "reencrypt")
    after = printed(vault_account)
    assert after["key_version"] == 2
    database = database_of(vault_account)
    assert not opens(database, before["pragmas"])
    assert opens(database, after["pragmas"])
    assert vault_account.run("get", "vault", "own-record").stdout == b"the store's own"


def test_the_sqlcipher_shell_behaves_as_the_docs_say(vault_account: Account) -> None:
    """Debian's shell (SQLCipher 3) cannot open a SQLCipher 4 file; a SQLCipher 4 shell can."""
    shell = shutil.which("sqlcipher")
    if shell is None:
        pytest.skip("no sqlcipher shell installed (Debian: apt-get install sqlcipher)")
    version = subprocess.run(
        [shell, ":memory:"],
        input="PRAGMA cipher_version;\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    script = vault_account.run("database", "key", "vault", "--expose-key").stdout.decode()
    result = subprocess.run(
        [shell, str(database_of(vault_account))],
        input=script + READ_THE_KEYS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if version.startswith("3."):
        assert result.returncode != 0
        assert "file is encrypted or is not a database" in result.stderr
        assert "own-record" not in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert "own-record" in result.stdout
