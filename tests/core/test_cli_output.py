"""Where ``encrypt`` and ``decrypt`` write, what a failed or killed run leaves, and ``verify``.

Kills are driven, not timed: the CLI runs in a child through a small
wrapper that replaces one step of publishing the output (``_link`` or
``_rename`` in ``strongroom.cli._io``) with one that says so on stdout and
blocks; the test then looks at the directory and sends ``SIGKILL``.  The
plaintext comes in on stdin and never sits in a file of the test's own, so
"no file holds plaintext" is checked by reading every file under
``tmp_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_data import (
    FILE_VARIABLE,
    MIB,
    WRONG_PASSPHRASE,
    Account,
    account,
    concurrently,
    initialised,
    snapshot,
    write_private,
)

from strongroom.cli._io import output
from strongroom.formats.chunked import DEFAULT_CHUNK_SIZE, HEADER_SIZE, TAG_SIZE

__all__ = ["account", "initialised"]  # the fixtures, shared with test_cli_data

PLAIN = os.urandom(2 * MIB + 4321)
#: The CLI, with one publishing step of its output replaced by a pause, or by a failure
#: with the errno given.  Run as ``python -c PAUSING STEP ERRNO [CLI] --config ...``.
PAUSING = """
import os, sys
from strongroom.cli import _io
from strongroom.cli.main import main

step, fail = sys.argv[1], sys.argv[2]
original = getattr(_io, step)

def paused(*args):
    if fail:
        raise OSError(int(fail), os.strerror(int(fail)))
    print("paused", flush=True)
    sys.stdin.read()  # until killed
    return original(*args)

setattr(_io, step, paused)
sys.exit(main(sys.argv[sys.argv.index("--config") :]))  # what follows the CLI's own name
"""


def holding_plaintext(root: Path) -> list[str]:
    """Every regular file under ``root`` that holds a piece of :data:`PLAIN`."""
    marker = PLAIN[MIB : MIB + 4096]
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and marker in path.read_bytes()
    )


def sealed(account: Account, tmp_path: Path, data: bytes = PLAIN) -> Path:
    target = tmp_path / "plain.sr"
    account.run("encrypt", "-", target, stdin=data)
    return target


def paused_decrypt(
    account: Account, step: str, source: Path, target: Path
) -> subprocess.Popen[bytes]:
    """``decrypt source target`` in a child stopped at ``step``, once it says so."""
    command = [sys.executable, "-c", PAUSING, step, "", "--config", str(account.config)]
    child = subprocess.Popen(
        [*command, "decrypt", str(source), str(target)],
        env=account.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line == b"paused\n", child.communicate()[1].decode()
    return child


def kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.communicate()


def partials(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.sr-partial"))


# -- regular files -------------------------------------------------------------------------


def test_a_directory_as_output_is_refused_before_anything_is_written(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    directory = tmp_path / "out"
    directory.mkdir()
    (tmp_path / "link").symlink_to(directory)
    before = snapshot(tmp_path)
    lines = concurrently(
        lambda: account.error("decrypt", source, directory, code=2),
        lambda: account.error("decrypt", source, tmp_path / "link", code=2),
        lambda: account.error("encrypt", source, directory, code=2),
        lambda: account.error("decrypt", source, tmp_path / "no" / "x", code=2),
        lambda: account.error("decrypt", tmp_path / "no.sr", tmp_path / "x", code=2),
    )
    assert lines == [
        f"{directory}: is a directory; name the output file",
        f"{tmp_path / 'link'}: is a directory; name the output file",
        f"{directory}: is a directory; name the output file",
        f"{tmp_path / 'no' / 'x'}: cannot write (No such file or directory)",
        f"{tmp_path / 'no.sr'}: cannot read (No such file or directory)",
    ]
    assert snapshot(tmp_path) == before
    assert holding_plaintext(tmp_path) == []


def test_a_kill_before_the_output_is_linked_leaves_nothing(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    child = paused_decrypt(account, "_link", source, out / "plain.bin")
    assert list(out.iterdir()) == []  # every chunk written, into a file with no name
    kill(child)
    assert list(out.iterdir()) == []
    assert holding_plaintext(tmp_path) == []


def test_a_kill_between_link_and_rename_is_swept_by_the_next_run(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "plain.bin"
    existing.write_bytes(b"the previous contents")
    child = paused_decrypt(account, "_rename", source, existing)
    (partial,) = partials(out)  # the only instant the plaintext has a name
    assert partial.name.startswith(".plain.bin.")
    assert partial.read_bytes() == PLAIN
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    kill(child)
    assert partials(out) == [partial]

    account.run("encrypt", "-", out / "next.sr", stdin=b"anything")  # the next run into out/
    assert sorted(path.name for path in out.iterdir()) == ["next.sr", "plain.bin"]
    assert existing.read_bytes() == b"the previous contents"
    assert holding_plaintext(tmp_path) == []


def test_a_failed_rename_removes_the_linked_output(account: Account, tmp_path: Path) -> None:
    source = sealed(account, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "plain.bin"
    existing.write_bytes(b"the previous contents")
    command = [sys.executable, "-c", PAUSING, "_rename", "18"]  # EXDEV
    line = account.error("decrypt", source, existing, code=1, launcher=command)
    assert line == f"{existing}: Invalid cross-device link"
    assert sorted(out.iterdir()) == [existing]
    assert existing.read_bytes() == b"the previous contents"
    assert holding_plaintext(tmp_path) == []


@pytest.fixture
def locked_partial(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A partial output held locked by a live process, as while a command publishes it."""
    out = tmp_path / "out"
    out.mkdir()
    path = out / ".busy.bin.0123456789abcdef.sr-partial"
    path.write_bytes(b"being published")
    path.chmod(0o600)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            "handle = open(sys.argv[1], 'rb')\n"
            "fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"locked\n"
    try:
        yield path, holder
    finally:
        holder.kill()
        holder.communicate()


def test_the_sweep_spares_live_outputs_and_other_names(
    account: Account, tmp_path: Path, locked_partial: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    busy, holder = locked_partial
    out = busy.parent
    stale = out / ".old.bin.fedcba9876543210.sr-partial"
    stale.write_bytes(b"left by a killed run")
    kept = {
        out / ".notes.sr-partial": b"not a staging name",
        out / "report.0123456789abcdef.sr-partial": b"not hidden",
        out / ".x.0123456789ABCDEF.sr-partial": b"not lower-case hex",
    }
    for path, data in kept.items():
        path.write_bytes(data)
    (out / ".y.0123456789abcdef.sr-partial").symlink_to(out / ".notes.sr-partial")

    account.run("encrypt", "-", out / "a.sr", stdin=b"first")
    assert not stale.exists()
    assert busy.read_bytes() == b"being published"  # its command is alive: not touched
    for path, data in kept.items():
        assert path.read_bytes() == data
    assert (out / ".y.0123456789abcdef.sr-partial").is_symlink()

    holder.kill()
    holder.communicate()
    account.run("encrypt", "-", out / "b.sr", stdin=b"second")
    assert not busy.exists()


# -- devices, FIFOs and standard output ----------------------------------------------------


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_a_device_is_written_in_place_not_replaced(
    account: Account, tmp_path: Path, command: str
) -> None:
    source = sealed(account, tmp_path) if command == "decrypt" else tmp_path / "small"
    if command == "encrypt":
        source.write_bytes(b"to nowhere")
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    assert account.text(command, source, link) == f"{command}ed {source} -> {link}\n"
    assert link.is_symlink()
    assert os.readlink(link) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert holding_plaintext(tmp_path) == []


@contextlib.contextmanager
def reading_fifo(fifo: Path) -> Iterator[list[bytes]]:
    """A reader draining ``fifo`` on a thread; the list holds what it read once the block ends."""
    got: list[bytes] = []

    def drain() -> None:
        with fifo.open("rb") as handle:
            got.append(handle.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield got
    finally:
        if reader.is_alive() and not got:
            with contextlib.suppress(OSError):  # the command never opened it: let the reader go
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=60)
        assert not reader.is_alive()


def test_a_fifo_gets_the_plaintext_streamed_and_stays_a_fifo(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with reading_fifo(fifo) as got:
        assert account.text("decrypt", source, fifo) == f"decrypted {source} -> {fifo}\n"
    assert got == [PLAIN]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_fifo_keeps_the_verified_chunks_before_a_failure(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    data = bytearray(source.read_bytes())
    data[HEADER_SIZE + DEFAULT_CHUNK_SIZE + TAG_SIZE + 10] ^= 0x01  # in the second chunk
    source.write_bytes(data)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with reading_fifo(fifo) as got:
        assert account.error("decrypt", source, fifo, code=3) == "authentication failed"
    assert got == [PLAIN[:DEFAULT_CHUNK_SIZE]]  # the first chunk, verified; nothing after


def test_a_name_for_standard_output_gets_the_data_alone(account: Account, tmp_path: Path) -> None:
    source = sealed(account, tmp_path)
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    assert account.run("decrypt", source, stdout).stdout == PLAIN
    assert stdout.is_symlink()
    assert holding_plaintext(tmp_path) == []


# -- verify --------------------------------------------------------------------------------


def test_verify_checks_every_chunk_and_writes_no_plaintext(
    account: Account, tmp_path: Path
) -> None:
    source = sealed(account, tmp_path)
    ciphertext = source.read_bytes()
    flipped = bytearray(ciphertext)
    flipped[-5] ^= 0x80  # in the last chunk's tag
    cut = ciphertext[: HEADER_SIZE + DEFAULT_CHUNK_SIZE + TAG_SIZE]  # a whole chunk dropped
    bad = {"flipped": bytes(flipped), "cut": cut}
    for name, data in bad.items():
        (tmp_path / f"{name}.sr").write_bytes(data)
    before = snapshot(tmp_path)

    ok, piped, *failed, foreign = concurrently(
        lambda: account.run("verify", source),
        lambda: json.loads(account.run("verify", "-", "--json", stdin=ciphertext).stdout),
        *(
            lambda name=name: account.error("verify", tmp_path / f"{name}.sr", code=3)
            for name in bad
        ),
        lambda: account.error("verify", source, "--account", "other", code=3),
    )
    assert ok.stdout.decode() == (
        f"verified {source}: every chunk is authentic and none is missing ({len(PLAIN)} bytes)\n"
    )
    assert piped == {"verified": "-", "plaintext_bytes": len(PLAIN)}
    assert failed == ["authentication failed", "authentication failed"]
    assert foreign == "authentication failed"
    assert snapshot(tmp_path) == before
    assert holding_plaintext(tmp_path) == []


def test_verify_exits_4_when_the_key_is_unavailable(account: Account, tmp_path: Path) -> None:
    source = sealed(account, tmp_path)
    wrong = write_private(tmp_path / "wrong", WRONG_PASSPHRASE)
    refused = account.error(
        "verify", source, code=4, env={**account.env, FILE_VARIABLE: str(wrong)}
    )
    assert refused == "wrong passphrase for 'alice', or the wrapped key was altered"
    account.run("keys", "rotate", "--purpose", "files")
    account.run("keys", "retire", "files", "1", "--force")  # files are not counted
    assert account.error("verify", source, code=4) == (
        "files key version 1 of account 'alice' is retired"
    )


def test_without_o_tmpfile_the_output_is_staged_under_a_partial_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_TMPFILE")  # as on a file system or system without it
    target = tmp_path / "plain.bin"
    target.write_bytes(b"previous")
    with output(str(target)) as sink:
        sink.write(PLAIN)
        (staged,) = partials(tmp_path)
        assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    assert sorted(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == PLAIN

    def failing_command() -> None:
        with output(str(target)) as sink:
            sink.write(b"half of something")
            assert len(partials(tmp_path)) == 1
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_command()
    assert sorted(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == PLAIN
