"""The sync part of ``strongroom demo``: what it leaves in the server's database, and its skip.

``tests/core/test_cli.py`` checks the demo's lines as a user sees them; here
the sync part runs in-process in a directory the test keeps, so the
server's database can be searched after it, and once more in a fresh
interpreter where the ``server`` extra cannot be imported.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from strongroom.cli._demo_pki import make_demo_pki
from strongroom.cli._demo_sync import BLOB_ROW, PLAINTEXTS, SERVER_DATABASE, sync_story

SKIPPED = (
    "10. sync: skipped, it needs the server and https extras (uvicorn is missing): "
    "pip install 'strongroom[server]'"
)


def test_the_servers_database_holds_no_plaintext_and_no_thread_is_left(tmp_path: Path) -> None:
    threads = set(threading.enumerate())
    steps: list[str] = []
    sync_story(tmp_path, steps.append)
    assert set(threading.enumerate()) == threads  # the server's thread was joined
    assert [step.split(":")[0] for step in steps] == [
        "sync server",
        "pins",
        "devices",
        "laptop",
        "phone",
        "conflict",
        "replayed the laptop's first push byte for byte (same signature, timestamp and nonce)",
        "server database",
    ]
    database = tmp_path / SERVER_DATABASE
    with sqlite3.connect(database) as db:
        objects = db.execute("SELECT count(*) FROM strongroom_objects").fetchone()[0]
        dump = "\n".join(db.iterdump()).encode()
    db.close()
    assert objects == 3  # two records and a blob, as ciphertext under opaque ids
    raw = b"".join(path.read_bytes() for path in database.parent.iterdir())
    assert len(PLAINTEXTS) == 8
    for plaintext in PLAINTEXTS:
        for haystack in (raw, dump):
            assert plaintext not in haystack
            assert plaintext.hex().encode() not in haystack.lower()
    # the devices' own files keep the blob sealed at rest, too
    for path in tmp_path.glob("*-1/**/*"):
        if path.is_file():
            assert BLOB_ROW not in path.read_bytes(), path


def test_the_pki_pins_a_root_and_a_leaf_for_loopback(tmp_path: Path) -> None:
    from cryptography import x509

    from strongroom.pins import spki_pin

    pki = make_demo_pki(tmp_path)
    root = x509.load_pem_x509_certificate(pki.ca_bundle.read_bytes())
    leaf = x509.load_pem_x509_certificate(pki.cert_chain.read_bytes())
    assert (spki_pin(root), spki_pin(leaf)) == (pki.root_pin, pki.leaf_pin)
    assert leaf.issuer == root.subject != leaf.subject
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert pki.key.stat().st_mode & 0o777 == 0o600


def test_without_the_server_extra_the_sync_part_is_one_line_and_exit_0(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # as if the server extra were not installed\n"
        "from strongroom.cli.main import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("9. wiped the account")
    assert lines[-1] == SKIPPED
    assert list(tmp_path.iterdir()) == []
