"""Audit events as JSON lines, appended to a file only its owner can read.

An application registers it on its stack, with the path it chooses::

    Strongroom(config, plugins=[JsonLinesAuditLog("/var/log/app/audit.jsonl")])

or lets the environment choose: :func:`from_environment` gives a plugin
that writes to ``$STRONGROOM_AUDIT_LOG`` when that is set (read when the
stack is configured) and does nothing otherwise.  It is not registered for
autoloading: a hook plugin loaded by every command would cost each one the
plugin machinery, and an audit log is the application's to choose.

Each line is one event: ``{"action", "account", "details", "outcome",
"time"}``, keys sorted, ``time`` in UTC (ISO 8601).  The file is created
with mode 0600 and opened with ``O_APPEND | O_NOFOLLOW``: a symlink in its
place, or a file another user owns or others can read, is refused.  A
refused or failed write is logged as a warning and does not stop the
operation that was being audited (locking and wiping must never be held
up by a log).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import stat
from pathlib import Path

from strongroom import hookimpl
from strongroom.audit import AuditEvent

__all__ = ["ENV_VARIABLE", "JsonLinesAuditLog", "from_environment"]

ENV_VARIABLE = "STRONGROOM_AUDIT_LOG"

log = logging.getLogger(__name__)


class JsonLinesAuditLog:
    """Appends each ``strongroom_audit_event`` to ``path`` as one JSON line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"JsonLinesAuditLog({str(self.path)!r})"

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        line = json.dumps(
            {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
                "action": event.action,
                "account": event.account,
                "outcome": event.outcome,
                "details": dict(event.details),
            },
            sort_keys=True,
        )
        try:
            self._append(line.encode() + b"\n")
        except OSError as exc:
            log.warning("audit log %s: cannot append (%s)", self.path, exc.strerror or exc)

    def _append(self, data: bytes) -> None:
        # O_NONBLOCK: a FIFO planted at the path fails (ENXIO) instead of hanging a lock or wipe
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags | os.O_NONBLOCK, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise PermissionError(0, "not a regular file of its own (a FIFO, or a hard link)")
            if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
                raise PermissionError(0, "owned by another user or readable by others")
            written = os.write(fd, data)  # one write under O_APPEND: lines never interleave
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes): disk full?")
        finally:
            os.close(fd)


class _FromEnvironment:
    """A :class:`JsonLinesAuditLog` once ``$STRONGROOM_AUDIT_LOG`` is set (read at configure)."""

    def __init__(self) -> None:
        self._log: JsonLinesAuditLog | None = None

    @hookimpl
    def strongroom_configure(self) -> None:
        path = os.environ.get(ENV_VARIABLE)
        self._log = JsonLinesAuditLog(path) if path else None

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        if self._log is not None:
            self._log.strongroom_audit_event(event)


def from_environment() -> object:
    """A plugin that writes to ``$STRONGROOM_AUDIT_LOG`` when it is set, and else does nothing."""
    return _FromEnvironment()
