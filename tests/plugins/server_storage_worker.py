"""Another server process for the PostgreSQL service tests: ``server_storage_worker.py JOB``.

``JOB`` is JSON: ``settings`` (the storage's table; the password comes
from ``$STRONGROOM_TEST_PG_PASSWORD``), ``go`` (a file to wait for, so
processes start together), ``action`` (``open``, or ``push`` with
``name`` and ``count``).  It prints one JSON line: the seqs acknowledged,
in order, or the error's type and message.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from strongroom.errors import StrongroomError
from strongroom.server_storage import Change
from strongroom_plugins.server_stores.postgresql import PostgresServerStorage


def main(job: dict[str, object]) -> dict[str, object]:
    go = Path(str(job["go"]))
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            return {"error": "timeout", "message": "no go file"}
        time.sleep(0.001)
    table = dict(job["settings"])  # type: ignore[call-overload]
    table["password"] = "env:STRONGROOM_TEST_PG_PASSWORD"  # noqa: S105 - a reference
    acked: list[int] = []
    try:
        with PostgresServerStorage(PostgresServerStorage.Settings.from_table(table)) as storage:
            if job["action"] == "push":
                for n in range(int(job["count"])):  # type: ignore[call-overload]
                    key = f"{job['name']}-{n}"
                    acked += [a.seq for a in storage.push("shared", [Change(key, b"v")])]
    except StrongroomError as exc:
        return {"acked": acked, "error": type(exc).__name__, "message": str(exc)}
    return {"acked": acked}


if __name__ == "__main__":
    assert os.environ.get("STRONGROOM_TEST_PG_PASSWORD")
    print(json.dumps(main(json.loads(sys.argv[1]))))
