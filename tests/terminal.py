"""A pseudo-terminal for prompt tests: a child on a terminal of its own, and its transcript."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator


class Terminal:
    """The controlling side of a pseudo-terminal, with a transcript of all it read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.transcript = b""
        self._seen = 0

    def expect(self, marker: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.transcript[self._seen :]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in {self.transcript!r}"
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child has gone
                    chunk = b""
                assert chunk, f"terminal closed before {marker!r}: {self.transcript!r}"
                self.transcript += chunk
        self._seen = self.transcript.index(marker, self._seen) + len(marker)

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")


@contextlib.contextmanager
def on_a_terminal(
    argv: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], Terminal]]:
    """``argv`` run in a session of its own on a new pseudo-terminal; killed at the end."""
    master, slave = pty.openpty()
    child = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env
    )
    os.close(slave)
    try:
        yield child, Terminal(master)
    finally:
        child.kill()
        child.wait()
        os.close(master)
