"""Failures of the system under the CLI: full disks, limits, permissions, closed streams.

Each must end in one line naming the path and the system's reason, with
the documented exit code, and leave what was there before readable.  The
failures are real, not simulated: ``/dev/full`` (ENOSPC), a file-size
limit set on the child (``RLIMIT_FSIZE``: EFBIG), a data directory the
command's user may not write (as root the child runs as ``nobody``,
see :func:`test_cli_data.unprivileged`), and descriptors closed by the
shell.  Also here: argument order and ``status`` validating the config.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

import pytest
from test_cli_data import (
    MIB,
    Account,
    account,
    concurrently,
    initialised,
    snapshot,
    unprivileged,
)

from strongroom.cli.main import build_parser

__all__ = ["account", "initialised"]  # the fixtures, shared with test_cli_data

#: Runs ``argv[2:]`` with the largest file it may write limited to ``argv[1]`` bytes.
#: Python ignores SIGXFSZ, so a write past it fails with EFBIG instead of killing it.
FILE_SIZE_LIMIT = (
    sys.executable,
    "-c",
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n",
)
#: Runs the rest with standard input, or output, closed.
CLOSED_STDIN = ("sh", "-c", 'exec "$@" <&-', "sh")
CLOSED_STDOUT = ("sh", "-c", 'exec "$@" >&-', "sh")
STDOUT_TO_FULL = ("sh", "-c", 'exec "$@" >/dev/full', "sh")


def limited(size: int) -> tuple[str, ...]:
    return (*FILE_SIZE_LIMIT, str(size))


def files_in(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """:func:`snapshot` of the regular files alone (a failed write may touch a directory)."""
    return {name: state for name, state in snapshot(root).items() if stat.S_ISREG(state[0])}


# -- disk full, file too large -------------------------------------------------------------


def test_a_full_device_fails_in_one_line(account: Account, tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(MIB + 3))
    sealed = tmp_path / "plain.sr"
    account.run("encrypt", plain, sealed)
    full = tmp_path / "full"
    full.symlink_to("/dev/full")
    lines = concurrently(
        lambda: account.error("encrypt", plain, full, code=1),
        lambda: account.error("decrypt", sealed, full, code=1),
    )
    assert lines == [f"{full}: No space left on device"] * 2
    assert full.is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)

    account.run("put", "default", "k", stdin=b"value")
    lines = concurrently(
        lambda: account.error("get", "default", "k", code=1, launcher=STDOUT_TO_FULL),
        lambda: account.error("decrypt", sealed, "-", code=1, launcher=STDOUT_TO_FULL),
        lambda: account.error("ls", "default", code=1, launcher=STDOUT_TO_FULL),
    )
    assert lines == ["standard output: No space left on device"] * 3


def test_a_file_too_large_leaves_the_previous_output(account: Account, tmp_path: Path) -> None:
    plain = os.urandom(3 * MIB)
    sealed = tmp_path / "plain.sr"
    account.run("encrypt", "-", sealed, stdin=plain)
    out = tmp_path / "out"
    out.mkdir()
    previous = {out / "plain.bin": b"previous plaintext", out / "again.sr": b"previous sealed"}
    for path, data in previous.items():
        path.write_bytes(data)

    lines = concurrently(
        lambda: account.error("decrypt", sealed, out / "plain.bin", code=1, launcher=limited(MIB)),
        lambda: account.error(
            "encrypt", "-", out / "again.sr", code=1, stdin=plain, launcher=limited(MIB)
        ),
    )
    assert lines == [f"{out / 'plain.bin'}: File too large", f"{out / 'again.sr'}: File too large"]
    assert {path: path.read_bytes() for path in out.iterdir()} == previous  # and nothing else


def test_a_key_record_that_cannot_grow_is_left_as_it_was(account: Account) -> None:
    account.run("put", "default", "kept", stdin=b"value")
    before = files_in(account.data_dir)
    size = account.keys_file.stat().st_size
    line = account.error("keys", "rotate", code=1, launcher=limited(size))
    assert line == f"{account.keys_file}: cannot write the key record (File too large)"
    assert files_in(account.data_dir) == before
    assert account.run("get", "default", "kept").stdout == b"value"


# -- permissions ---------------------------------------------------------------------------


def test_a_data_directory_the_user_cannot_write(account: Account) -> None:
    user = unprivileged()
    account.run("put", "default", "kept", stdin=b"value")
    user.give(account.data_dir, Path(account.env["STRONGROOM_PASSPHRASE_FILE"]))
    value = account.run("get", "default", "kept", launcher=user.launcher).stdout
    assert value == b"value"  # the user can use the account

    before = files_in(account.data_dir)
    with user.read_only(account.directory):
        line = account.error("keys", "rotate", code=1, launcher=user.launcher)
    assert line == f"{account.keys_file}: cannot write the key record (Permission denied)"
    assert files_in(account.data_dir) == before

    store = account.directory / "stores" / "default"
    with contextlib.ExitStack() as stack:
        for directory in [store, *(path for path in store.rglob("*") if path.is_dir())]:
            stack.enter_context(user.read_only(directory))
        line = account.error("put", "default", "new", stdin=b"new", code=1, launcher=user.launcher)
    assert f"{store}/" in line  # the store words it; the path and the reason are there
    assert "Permission denied" in line
    assert files_in(account.data_dir) == before
    assert account.run("get", "default", "kept", launcher=user.launcher).stdout == b"value"


def test_a_directory_where_the_key_record_should_be(account: Account, tmp_path: Path) -> None:
    account.run("put", "default", "kept", stdin=b"value")
    aside = tmp_path / "keys.json"
    account.keys_file.rename(aside)
    account.keys_file.mkdir()
    expected = f"{account.keys_file}: cannot read the key record (Is a directory)"
    lines = concurrently(
        lambda: account.error("get", "default", "kept", code=1),
        lambda: account.error("keys", "rotate", code=1),
        lambda: account.error("encrypt", "-", tmp_path / "x.sr", stdin=b"x", code=1),
    )
    assert lines == [expected] * 3
    assert not (tmp_path / "x.sr").exists()
    account.keys_file.rmdir()
    aside.rename(account.keys_file)
    assert account.run("get", "default", "kept").stdout == b"value"


# -- closed standard streams ---------------------------------------------------------------


def test_closed_standard_streams_fail_in_one_line(account: Account, tmp_path: Path) -> None:
    account.run("put", "default", "kept", stdin=b"value")
    sealed = tmp_path / "kept.sr"
    account.run("encrypt", "-", sealed, stdin=b"value")
    before = files_in(account.data_dir)
    closed_out = "standard output: Bad file descriptor (it is closed)"
    closed_in = "standard input: Bad file descriptor (it is closed)"
    lines = concurrently(
        lambda: account.error("get", "default", "kept", code=1, launcher=CLOSED_STDOUT),
        lambda: account.error("ls", "default", code=1, launcher=CLOSED_STDOUT),
        lambda: account.error("decrypt", sealed, "-", code=1, launcher=CLOSED_STDOUT),
        lambda: account.error("put", "default", "new", code=1, launcher=CLOSED_STDIN),
        lambda: account.error("put", "default", "blob", "--blob", code=1, launcher=CLOSED_STDIN),
        lambda: account.error("encrypt", "-", tmp_path / "new.sr", code=1, launcher=CLOSED_STDIN),
    )
    assert lines == [closed_out] * 3 + [closed_in] * 3
    assert files_in(account.data_dir) == before
    assert not (tmp_path / "new.sr").exists()
    assert account.text("ls", "default") == "kept\n"


# -- arguments and config --------------------------------------------------------------------


def test_options_may_come_between_operands(account: Account, tmp_path: Path) -> None:
    blob = os.urandom(MIB + 5)
    source = tmp_path / "blob.bin"
    source.write_bytes(blob)
    concurrently(
        lambda: account.run("put", "default", "before", "--blob", source),
        lambda: account.run("put", "default", "after", source, "--blob"),
        lambda: account.run("put", "--blob", "default", "first", source),
    )
    values = concurrently(
        *(
            lambda key=key: account.run("get", "default", key).stdout
            for key in ("before", "after", "first")
        ),
        lambda: account.text("ls", "default"),
    )
    assert values == [blob, blob, blob, "after\nbefore\nfirst\n"]
    for argv in (["S", "K", "--blob", "F"], ["S", "K", "F", "--blob"], ["--blob", "S", "K", "F"]):
        parsed = build_parser().parse_args(["put", *argv])
        assert (parsed.store, parsed.key, parsed.source, parsed.blob) == ("S", "K", "F", True)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "STRONGROOM__CIPHER_SUITE__USE",
            "rot13",
            "no backend 'rot13' in entry-point group strongroom.cipher_suites",
        ),
        (
            "STRONGROOM__STORES__NOTES__CHUNK_SIZE",
            "10",
            "[stores.notes] key 'chunk_size': expected an integer >= 4096",
        ),
    ],
)
def test_status_validates_the_config_as_config_check_does(
    account: Account, variable: str, value: str, expected: str
) -> None:
    env = {**account.env, variable: value}
    status, check = concurrently(
        lambda: account.error("status", code=2, env=env),
        lambda: account.error("config", "check", code=2, env=env),
    )
    assert status == check
    assert expected in status
