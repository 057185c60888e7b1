"""Plaintext SQLite databases for the ``migrate`` tests, and a dump to compare them by.

A source is made in a child process with the standard library's
``sqlite3`` (another SQLite than SQLCipher's, as an application's would
be), so that it can leave a write-ahead log or a hot journal behind by
exiting without closing.  The child prints the dump of what a reader must
find, computed before it leaves anything half done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CANARY_TEXT = "CANARY-plaintext-7f3a9c51"
CANARY_BLOB = b"\x00\xffCANARY-blob-e41d\x00" * 3
#: Only in rows written after the source switched to WAL and never checkpointed.
LATE_CANARY = "LATE-wal-row-9b2e"
APP_TABLES = ("people", "events", "tags", "audit")
APP_NAMES = (*APP_TABLES, "events_by_person", "people_name", "named_events", "people_audit")

SCHEMA = """
CREATE TABLE people(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    photo BLOB,
    note TEXT,
    shout TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL
);
CREATE TABLE events(person INTEGER REFERENCES people(id), at REAL, payload BLOB);
CREATE TABLE tags(tag TEXT PRIMARY KEY, weight INTEGER) WITHOUT ROWID;
CREATE TABLE audit(what TEXT);
CREATE INDEX events_by_person ON events(person, at);
CREATE UNIQUE INDEX people_name ON people(name);
CREATE VIEW named_events AS SELECT p.name, e.at FROM events e JOIN people p ON p.id = e.person;
CREATE TRIGGER people_audit AFTER INSERT ON people BEGIN
    INSERT INTO audit VALUES ('added ' || new.name);
END;
"""

QUERIES = {
    "people": "SELECT rowid, id, name, photo, note, shout FROM {s}.people ORDER BY rowid",
    "events": "SELECT rowid, person, at, payload FROM {s}.events ORDER BY rowid",
    "tags": "SELECT tag, weight FROM {s}.tags ORDER BY tag",
    "audit": "SELECT rowid, what FROM {s}.audit ORDER BY rowid",
    "sequence": "SELECT name, seq FROM {s}.sqlite_sequence WHERE name = 'people'",
    "view": "SELECT name, at FROM {s}.named_events ORDER BY 1, 2",
}


def _plain(value: object) -> object:
    return "b:" + value.hex() if isinstance(value, bytes) else value


def dump(conn: Any, schema: str = "main") -> dict[str, list[list[object]]]:
    """Every row of the application's tables, its view and its AUTOINCREMENT counter."""
    return {
        name: [[_plain(value) for value in row] for row in conn.execute(query.format(s=schema))]
        for name, query in QUERIES.items()
    }


def fill(conn: Any, rows: int = 0) -> None:
    """The schema and rows with BLOBs, NULLs, gaps in rowids and a raised counter."""
    conn.executescript(SCHEMA)  # in autocommit mode: the rows follow in one transaction
    conn.execute("BEGIN")
    for number in range(6):
        conn.execute(
            "INSERT INTO people(name, photo, note) VALUES (?, ?, ?)",
            (f"{CANARY_TEXT} person {number}", CANARY_BLOB if number % 2 else None, None),
        )
    conn.execute("DELETE FROM people WHERE id = 6")  # the counter stays at 6
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?)",
        [(1 + n % 5, n / 3, CANARY_BLOB if n % 3 else None) for n in range(20)],
    )
    conn.execute("DELETE FROM events WHERE rowid IN (3, 7)")
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [("b", 2), ("a", None), ("c", 3)])
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?)",
        [(1, n, os.urandom(1024)) for n in range(rows)],
    )
    conn.execute("COMMIT")


CHILD = """
import json, os, sqlite3, sys
sys.path.insert(0, sys.argv[3])
from sqlite_sources import LATE_CANARY, dump, fill

path, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[4])
conn = sqlite3.connect(path, isolation_level=None)
if mode == "wal":
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    fill(conn, rows)
    conn.execute("INSERT INTO people(name, note) VALUES (?, ?)", (LATE_CANARY, "late"))
    print(json.dumps(dump(conn)), flush=True)
    os._exit(0)  # the log is left as it is, never checkpointed
fill(conn, rows)
print(json.dumps(dump(conn)), flush=True)
if mode == "hot-journal":
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("BEGIN")
    conn.execute("UPDATE events SET payload = zeroblob(900), at = -1")
    conn.execute("UPDATE people SET note = 'never committed'")
    os._exit(0)  # pages changed in the file, the journal hot beside it
conn.close()
"""


def make_source(path: Path, mode: str = "plain", rows: int = 0) -> dict[str, Any]:
    """Write a source database (``plain``, ``wal`` or ``hot-journal``); return its dump."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode, str(Path(__file__).parent), str(rows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected: dict[str, Any] = json.loads(done.stdout)
    return expected


def read_plaintext(path: Path) -> dict[str, Any]:
    """The dump a fresh reader of ``path`` gets, read in a child as an application would."""
    probe = (
        "import json, sqlite3, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from sqlite_sources import dump\n"
        f"print(json.dumps(dump(sqlite3.connect({str(path)!r}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found
