"""Strongroom's own log records carry no payload, record name, passphrase or key.

A whole data-at-rest lifecycle runs in process on the default stack, with
every logger at DEBUG, and every record captured is searched for each
secret the run handled: as text, and keys as raw bytes, hex, base64 and
their ``repr``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from accounts import default_stack_config
from strongroom._stack import Strongroom
from strongroom.errors import UnlockFailedError
from strongroom.keys.purposes import FILES, names_purpose, store_purpose
from strongroom_plugins.stores import _disk

PASSPHRASE = "PASSPHRASE-SHOULD-NOT-LEAK correct horse"  # noqa: S105 - the test passphrase
WRONG_PASSPHRASE = "WRONG-PASSPHRASE-SHOULD-NOT-LEAK mule"  # noqa: S105
RECORDS = {
    "NAME-SHOULD-NOT-LEAK/shopping": b"PAYLOAD-SHOULD-NOT-LEAK eggs, flour, milk",
    "NAME-SHOULD-NOT-LEAK/safe": b"PAYLOAD-SHOULD-NOT-LEAK the combination is 12-34-56",
}
BLOB_NAME = "BLOB-NAME-SHOULD-NOT-LEAK/cat.jpg"
BLOB = b"BLOB-PAYLOAD-SHOULD-NOT-LEAK " * 20_000  # several chunks
STORE = "default"


def _forms(secret: bytes | str) -> list[str]:
    """The ways a secret could show up in a log line."""
    if isinstance(secret, str):
        return [secret]
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(secret.decode())
    return forms


def _texts(record: logging.LogRecord) -> Iterable[str | bytes]:
    """Everything a handler could write for ``record``: message, arguments, traceback."""
    yield logging.Formatter().format(record)  # the message, with any traceback and stack
    yield repr(record.msg)
    yield repr(record.args)
    for arg in record.args if isinstance(record.args, tuple) else ():
        if isinstance(arg, (bytes, bytearray, memoryview)):
            yield bytes(arg)


class Secrets:
    """Each secret the lifecycle handles, collected as it goes."""

    def __init__(self) -> None:
        self.values: list[bytes | str] = [PASSPHRASE, WRONG_PASSPHRASE, BLOB_NAME, BLOB[:40]]
        for name, value in RECORDS.items():
            self.values += [name, value]

    def keys_of(self, stack: Strongroom) -> None:
        keys = stack.keys
        reason = "to search the log for it"
        self.values.append(keys._session.master_key().export_raw(reason=reason))
        for purpose in (store_purpose(STORE), names_purpose(STORE), FILES):
            self.values.append(keys.data_key(purpose).material.export_raw(reason=reason))


def test_log_records_through_a_whole_lifecycle_carry_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("strongroom", "strongroom_plugins"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = Secrets()
    stack = Strongroom(default_stack_config(tmp_path, PASSPHRASE))
    purpose = store_purpose(STORE)
    with stack:
        stack.initialise()
        store = stack.store(STORE)
        for name, value in RECORDS.items():
            store.put(name, value)
        store.put_blob(BLOB_NAME, [BLOB[i : i + 65536] for i in range(0, len(BLOB), 65536)])
        secrets.keys_of(stack)

        # A rotation, then reads that re-encrypt lazily; one of them cannot write (disk full).
        stack.keys.rotate(purpose)
        secrets.keys_of(stack)
        first, second = RECORDS
        with monkeypatch.context() as patch:

            def disk_full(target: Path, data: bytes) -> Path:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

            patch.setattr(_disk, "write_temp", disk_full)
            assert store.get(first) == RECORDS[first]
        assert store.get(second) == RECORDS[second]
        assert b"".join(store.get_blob(BLOB_NAME)) == BLOB

        # Bulk re-encryption, then a new master key.
        list(store.reencrypt())
        stack.keys.rotate_master()
        secrets.keys_of(stack)
        assert store.get(first) == RECORDS[first]

        # A wrong passphrase unlocks nothing.
        wrong = Strongroom(default_stack_config(tmp_path, WRONG_PASSPHRASE))
        with wrong, pytest.raises(UnlockFailedError):
            wrong.keys.unlock()

        # A forced destroy of a version still in use, then listing and re-encrypting around it.
        old = stack.keys.primary_version(purpose)
        stack.keys.rotate(purpose)
        secrets.keys_of(stack)
        stack.keys.destroy(purpose, old, force=True)
        assert list(store.keys()) == []
        assert len(list(store.unreadable())) == len(RECORDS) + 1
        list(store.reencrypt())

        stack.wipe()

    ours = [
        r for r in caplog.records if r.name.split(".")[0] in ("strongroom", "strongroom_plugins")
    ]
    messages = [r.getMessage() for r in ours]
    # The capture works: the failed lazy re-encryption and the skipped objects were logged.
    assert any(m.startswith(f"could not re-encrypt a record of store {STORE!r}") for m in messages)
    assert f"store {STORE!r}: skipped 3 objects under retired or destroyed key versions" in messages
    assert len(secrets.values) == 4 + 2 * len(RECORDS) + 4 * 4
    for record in caplog.records:  # every logger's records, strongroom's among them
        for text in _texts(record):
            for secret in secrets.values:
                if isinstance(text, bytes):
                    assert not isinstance(secret, bytes) or secret not in text, record.name
                else:
                    for form in _forms(secret):
                        assert form not in text, f"{record.name}: {record.getMessage()}"
