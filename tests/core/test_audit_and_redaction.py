"""Audit events and log redaction: what the audit and redaction hooks hear, and from where.

The stack is real (passphrase provider, files store); a recording plugin
hears the events, and no event may carry the passphrase, a key or a value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts import default_stack_config
from strongroom import hookimpl
from strongroom._stack import Strongroom
from strongroom.audit import AuditEvent
from strongroom.errors import IntegrityError, PluginError, UnlockFailedError
from strongroom.redaction import MASK, RedactingFilter, add_patterns, redact
from strongroom.store import Store
from strongroom_contrib.audit_log import ENV_VARIABLE, JsonLinesAuditLog, from_environment

PASSPHRASE = "a passphrase for the audit tests"  # noqa: S105 - a test secret
VALUE = b"a value that never reaches an audit event"


class Recorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[tuple[str, str]]:
        return [(event.action, event.outcome) for event in self.events]


def stack(root: Path, passphrase: str, *plugins: object) -> Strongroom:
    return Strongroom(default_stack_config(root, passphrase), plugins=plugins)


def stored_record(directory: Path) -> Path:
    """The one record file of a files store (its name is 64 hex digits)."""
    (record,) = (p for p in (directory / "records").rglob("*") if len(p.name) == 64)
    return record


def test_each_key_lifecycle_step_a_failed_unlock_and_refused_data_are_audited(
    tmp_path: Path,
) -> None:
    heard = Recorder()
    with stack(tmp_path, PASSPHRASE, heard) as first:
        first.initialise()
        (name,) = first.config.instances("stores")
        first.store(name).put("k", VALUE)
    assert heard.actions()[:1] == [("account.created", "ok")]
    assert heard.events[0].details == {"providers": "main"}

    heard.events.clear()
    with stack(tmp_path, "not the passphrase", heard) as wrong, pytest.raises(UnlockFailedError):
        wrong.keys.unlock()
    (failure,) = heard.events
    assert (failure.action, failure.outcome, failure.account) == ("key.unlock", "failure", "alice")
    assert failure.details["error"] == "UnlockFailedError"

    heard.events.clear()
    with stack(tmp_path, PASSPHRASE, heard) as app:
        store = app.store(name)
        app.keys.unlock()
        purpose = f"store:{name}"
        app.keys.rotate(purpose)
        for _ in store.reencrypt():
            pass
        app.keys.retire(purpose, 1)
        app.keys.destroy(purpose, 1)
        record = stored_record(store.binding.directory)
        data = bytearray(record.read_bytes())
        data[-1] ^= 1
        record.write_bytes(bytes(data))
        with pytest.raises(IntegrityError):
            store.get("k")
        app.wipe()
    assert heard.actions() == [
        ("key.unlocked", "ok"),
        ("key.rotated", "ok"),
        ("key.retired", "ok"),
        ("key.destroyed", "ok"),
        ("data.refused", "failure"),
        ("key.locked", "ok"),
        ("account.wiped", "ok"),
    ]
    details = [dict(event.details) for event in heard.events]
    assert details[0] == {"provider": "main"}
    assert details[1] == {"purpose": purpose, "old_version": "1", "new_version": "2"}
    assert details[2] == details[3] == {"purpose": purpose, "version": "1"}
    assert details[4] == {"store": name, "error": "AuthenticationError"}
    assert details[5] == {"reason": "wipe"}
    seen = repr(heard.events) + repr(failure)
    assert PASSPHRASE not in seen
    assert "not the passphrase" not in seen
    assert VALUE.decode() not in seen
    assert "'k'" not in seen


@contextlib.contextmanager
def damaged(tmp_path: Path, heard: Recorder) -> Iterator[tuple[Strongroom, Store]]:
    """A stack whose store holds one record, its file cut short; nothing heard yet."""
    with stack(tmp_path, PASSPHRASE, heard) as app:
        app.initialise()
        (name,) = app.config.instances("stores")
        store = app.store(name)
        store.put("k", VALUE)
        record = stored_record(store.binding.directory)
        record.write_bytes(record.read_bytes()[:-1])
        heard.events.clear()
        yield app, store


def test_a_refusal_passing_through_several_reads_is_reported_once(tmp_path: Path) -> None:
    heard = Recorder()
    with damaged(tmp_path, heard) as (_app, store):
        with pytest.raises(IntegrityError):
            b"".join(store.get_any("k"))  # get_any reads through get: one report
        assert heard.actions() == [("data.refused", "failure")]


def test_the_json_lines_log_appends_owner_only_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with stack(tmp_path, PASSPHRASE, JsonLinesAuditLog(path)) as app:
        app.initialise()
        app.keys.rotate("files")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["action"] for line in lines] == ["account.created", "key.rotated", "key.locked"]
    assert set(lines[1]) == {"action", "account", "details", "outcome", "time"}
    assert lines[1]["details"] == {"purpose": "files", "old_version": "1", "new_version": "2"}
    assert PASSPHRASE not in path.read_text()


@pytest.mark.parametrize("trap", ["symlink", "readable by others"])
def test_the_json_lines_log_refuses_a_file_it_cannot_trust(
    tmp_path: Path, trap: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    target = tmp_path / "elsewhere"
    if trap == "symlink":
        target.write_bytes(b"")
        path.symlink_to(target)
    else:
        path.write_bytes(b"")
        path.chmod(0o644)
    audit = JsonLinesAuditLog(path)
    with caplog.at_level(logging.WARNING):
        audit.strongroom_audit_event(AuditEvent("key.locked", "alice"))
    assert "cannot append" in caplog.text
    assert (target if trap == "symlink" else path).read_bytes() == b""


def test_the_environment_plugin_writes_only_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: Any = from_environment()
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    with stack(tmp_path, PASSPHRASE, registered) as app:
        app.initialise()
    assert list(tmp_path.glob("*.jsonl")) == []
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(ENV_VARIABLE, str(path))
    with stack(tmp_path, PASSPHRASE, registered) as app:
        app.keys.unlock()
    assert [json.loads(line)["action"] for line in path.read_text().splitlines()] == [
        "key.unlocked",
        "key.locked",
    ]
    assert os.stat(path).st_uid == os.geteuid()


class Masking:
    @hookimpl
    def strongroom_redaction_patterns(self) -> list[str]:
        return [r"acct-[0-9]+"]


def test_redaction_patterns_mask_log_lines_on_a_redacting_handler(tmp_path: Path) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("strongroom.keys.example")
    logger.addHandler(handler)
    try:
        with stack(tmp_path, PASSPHRASE, Masking()):
            logger.warning("provider for %s could not keep its generation", "acct-12345")
    finally:
        logger.removeHandler(handler)
    assert lines == [f"provider for {MASK} could not keep its generation"]


def test_a_redaction_pattern_that_does_not_compile_is_a_plugin_error(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def strongroom_redaction_patterns(self) -> list[str]:
            return ["(unclosed"]

    with pytest.raises(PluginError, match="redaction pattern is not a regular expression"):
        stack(tmp_path, PASSPHRASE, Broken())


def test_the_cli_masks_its_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.cli import main as cli_main

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    cli_main._warnings_to_stderr()
    (handler,) = root.handlers
    assert any(isinstance(kept, RedactingFilter) for kept in handler.filters)


class Raising:
    """A broken listener: it raises on every event it hears."""

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        raise RuntimeError(f"listener broke on {event.action}")

    @hookimpl
    def strongroom_key_locked(self, account: str, reason: str) -> None:
        raise RuntimeError("listener broke")


def test_a_listener_that_raises_stops_neither_wipe_nor_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    heard = Recorder()
    with stack(tmp_path, PASSPHRASE, Raising(), heard) as app, caplog.at_level(logging.WARNING):
        app.initialise()
        app.keys.unlock()
        app.wipe()
        assert not app.config.account_dir.exists()  # the keys went, whatever the listener did
    assert ("account.wiped", "ok") in heard.actions()
    assert "failed on strongroom_key_locked (RuntimeError)" in caplog.text


@pytest.mark.parametrize("trap", ["fifo", "hard link"])
def test_the_json_lines_log_neither_hangs_on_a_fifo_nor_writes_through_a_link(
    tmp_path: Path, trap: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    if trap == "fifo":
        os.mkfifo(path, 0o600)
    else:
        victim = tmp_path / "victim"
        victim.write_bytes(b"")
        victim.chmod(0o600)
        os.link(victim, path)
    with caplog.at_level(logging.WARNING):
        JsonLinesAuditLog(path).strongroom_audit_event(AuditEvent("key.locked", "alice"))
    assert "cannot append" in caplog.text
    if trap == "hard link":
        assert victim.read_bytes() == b""


def test_a_refusal_in_re_encryption_or_in_a_mixins_read_is_reported(tmp_path: Path) -> None:
    heard = Recorder()
    with damaged(tmp_path, heard) as (app, store):
        app.keys.rotate(store.binding.purpose)
        heard.events.clear()
        with pytest.raises(IntegrityError):
            list(store.reencrypt())
        assert heard.actions() == [("data.refused", "failure")]

    class Caching:  # not a Store: its read is the one the class resolves
        def get(self, key: str) -> bytes:
            raise IntegrityError("the cached copy was altered")

    class Mixed(Caching, type(store)):  # type: ignore[misc]
        pass

    events: list[AuditEvent] = []
    mixed = Mixed.__new__(Mixed)
    mixed.binding = dataclasses.replace(store.binding, audit=events.append)
    with pytest.raises(IntegrityError):
        mixed.get("k")
    assert [event.action for event in events] == ["data.refused"]


def test_overlapping_patterns_and_tracebacks_are_masked_whole() -> None:
    add_patterns(["zqk-", r"zqk-[A-Za-z0-9]{8}", "zqt-[0-9]+"])  # this process's, from now on
    assert redact("key zqk-ABCDEFGH and zqk-") == f"key {MASK} and {MASK}"
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("strongroom.redaction-test")
    logger.addHandler(handler)
    try:
        raise ValueError("bad token zqt-12345")
    except ValueError:
        logger.exception("while using zqt-999")
    finally:
        logger.removeHandler(handler)
    (line,) = lines
    assert "zqt-12345" not in line
    assert "zqt-999" not in line
    assert "ValueError" in line
