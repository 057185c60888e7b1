"""The ``sqlcipher`` store on a full disk: a clear error, and nothing readable before is lost."""

from __future__ import annotations

from sqlcipher_support import MARKER, bind, child, open_sqlcipher_store

from strongroom.keys import AccountKeys

FULL_DISK = """
import resource
from strongroom.errors import StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
store.get("before")  # opened before the disk fills
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
for write in (
    lambda: store.put_blob("big", [b"z" * 4096] * 200),
    lambda: store.put_many((f"many/{i}", b"y" * 400) for i in range(2000)),
):
    try:
        write()
        say("stored")
    except StoreError as exc:
        say(f"{type(exc).__name__}: {exc}")
"""


def test_a_full_disk_is_a_clear_error_and_loses_nothing(account_keys: AccountKeys) -> None:
    with open_sqlcipher_store(bind(account_keys)) as store:
        store.put("before", MARKER)
        store.put_many((f"old/{index}", MARKER * 3) for index in range(50))
    process = child(account_keys, FULL_DISK)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    lines = out.splitlines()
    assert len(lines) == 2, out
    for line in lines:
        assert line.startswith("StoreError: store 'vault': its database could not be written")
        assert "database or disk is full" not in line
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert store.get("before") == MARKER
        assert len(list(store.keys("old/"))) == 50
        assert list(store.keys("many/")) == []
        assert "big" not in set(store.keys())
        store.put("after", b"the store still works")
