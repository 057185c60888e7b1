"""``STRONGROOM_DEBUG`` shows tracebacks and nothing more: it never stores data unencrypted.

The commands that store or write data run with the variable set, one of
them failing with an unexpected error so that the traceback is printed,
and every file they leave is searched for the plaintext.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_cli_data import MIB, Account, account, cli_command, initialised
from test_cli_failures import limited

from strongroom.cli.main import DEBUG_ENV

__all__ = ["account", "initialised"]  # the fixtures, shared with test_cli_data

#: Repeated through every plaintext, so that any stored fragment of it is found.
MARKER = b"PLAINTEXT-SHOULD-NOT-BE-STORED "
RECORD = MARKER * 4
BLOB = MARKER * (3 * MIB // len(MARKER))


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_debug_mode_stores_no_plaintext_and_a_failure_leaves_none(
    account: Account, tmp_path: Path
) -> None:
    debug = {**account.env, DEBUG_ENV: "1"}
    sealed, out = tmp_path / "sealed" / "blob.sr", tmp_path / "out"
    sealed.parent.mkdir()
    out.mkdir()

    account.run("put", "default", "note", "-", stdin=RECORD, env=debug)
    account.run("put", "default", "big", "-", "--blob", stdin=BLOB, env=debug)
    account.run("encrypt", "-", sealed, stdin=BLOB, env=debug)

    # An expected failure is still one line, and writes nothing.
    tampered = tmp_path / "sealed" / "tampered.sr"
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(data)
    assert "authentication failed" in account.error(
        "decrypt", tampered, out / "tampered.bin", code=3, env=debug
    )

    # An unexpected one (the file-size limit stops the write of the plaintext) shows its traceback.
    crashed = subprocess.run(
        [*limited(MIB), *cli_command(), "--config", account.config, "decrypt", sealed, out / "b"],
        capture_output=True,
        env=debug,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 1
    assert b"Traceback (most recent call last)" in crashed.stderr
    assert b"File too large" in crashed.stderr
    assert MARKER not in crashed.stdout + crashed.stderr

    assert list(out.iterdir()) == []
    assert files_holding(tmp_path, MARKER) == []
    # What was stored is there, under encryption.
    assert account.run("get", "default", "note").stdout == RECORD
    assert account.run("get", "default", "big").stdout == BLOB
