"""A device of its own process for the sync crash tests: writes, syncs, is killed, reports.

``python sync_crash_device.py CONFIG put KEY VALUE`` writes a record and
prints ``ok`` once the store has it; ``blob KEY SIZE SEED`` writes a blob
of ``SIZE`` seeded random bytes.  ``sync SPEC SERVER_PID`` runs one
``Syncer.sync`` (chunks of 4096 bytes) through a ``send`` that counts
requests by kind (``push``, ``changes``, ``begin``, ``chunk-put``,
``commit``, ``chunk-get``) and, at the ``N``-th of ``KIND`` when ``SPEC``
is ``KIND:N:ACTION``:

- ``client``: SIGKILLs itself as soon as that request's answer arrived,
  before the syncer or the outbox recorded anything of it;
- ``server-before``: SIGKILLs the server first, so the request finds none;
- ``server-after``: SIGKILLs the server once it has answered, and the
  answer is lost (as when the server dies between its commit and its reply).

``apply:N:client`` SIGKILLs the process as the pull is about to apply its
``N``-th entry: the ones before it applied, the page's cursor not saved.
Operations left waiting by an earlier failure are made due first, as
``strongroom sync --retry`` would.
``dump`` prints JSON: each key's SHA-256, what the outbox, the uploads
and the conflicts still hold, and the staging files left.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from strongroom import Strongroom, load_config
from strongroom.errors import RecordNotFoundError, TransportError
from strongroom.sync import Syncer
from strongroom.transport import SyncRequest, SyncResponse

CHUNK = 4096


def killed(*_args: object, **_kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_server(pid: int) -> None:
    """SIGKILL the server and wait until it is dead (a zombie: the test reaps it)."""
    os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return
        if state in {"Z", "X"}:
            return
        time.sleep(0.005)  # a poll interval under a deadline


def kind_of(request: SyncRequest) -> str:
    path = request.path.split("?")[0]
    parts = path.split("/")
    if "chunks" in parts:
        return "chunk-put" if request.method == "PUT" else "chunk-get"
    last = parts[-1]
    if last == "uploads" and request.method == "POST":
        return "begin"
    return last if last in {"push", "commit", "changes"} else "other"


def sync(stack: Strongroom, spec: str, server_pid: int) -> None:
    want, _, rest = spec.partition(":")
    nth, _, action = rest.partition(":")
    counts: dict[str, int] = {}

    def send(request: SyncRequest) -> SyncResponse:
        kind = kind_of(request)
        counts[kind] = counts.get(kind, 0) + 1
        hit = kind == want and counts[kind] == int(nth)
        if hit and action == "server-before":
            kill_server(server_pid)
        response = stack.send(request)
        if hit and action == "client":
            killed()
        if hit and action == "server-after":
            kill_server(server_pid)
            raise TransportError("the server died before its answer left")
        return response

    syncer = Syncer(stack, "notes", send=send, chunk_size=CHUNK)
    for operation in syncer.outbox.pending():
        syncer.outbox.retry(operation.id)
    if want == "apply":
        applying = syncer._apply  # the kill point is inside the pull
        entries = 0

        def apply(*args: Any, **kwargs: Any) -> Any:
            nonlocal entries
            entries += 1
            if entries == int(nth):
                killed()
            return applying(*args, **kwargs)

        syncer._apply = apply  # type: ignore[method-assign]
    report = syncer.sync()
    print(json.dumps({"offline": report.offline, "conflicts": report.conflicts}), flush=True)


def dump(stack: Strongroom) -> None:
    syncer = Syncer(stack, "notes", chunk_size=CHUNK)
    store = syncer.store
    contents: dict[str, str] = {}
    for key in list(store.keys()):
        if key.startswith("strongroom."):
            continue
        digest = hashlib.sha256()
        try:
            digest.update(store.get(key))
        except RecordNotFoundError:  # not a record: a blob
            for chunk in store.get_blob(key):
                digest.update(chunk)
        contents[key] = digest.hexdigest()
    staging = syncer.staging
    print(
        json.dumps(
            {
                "contents": contents,
                "outbox": [op.id for op in syncer.outbox.operations()],
                "uploads": [key for key, _ in syncer.state.uploads()],
                "conflicts": syncer.conflicts(),
                "staging": sorted(p.name for p in staging.iterdir()) if staging.exists() else [],
            }
        ),
        flush=True,
    )


def blob_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def main() -> None:
    config, mode, *args = sys.argv[1:]
    with Strongroom(load_config(config, environ={})) as stack:
        stack.keys.unlock()
        store = stack.store("notes")
        if mode == "put":
            store.put(args[0], args[1].encode())
            print("ok", flush=True)
        elif mode == "blob":
            data = blob_bytes(int(args[1]), int(args[2]))
            store.put_blob(args[0], iter([data[i : i + 1000] for i in range(0, len(data), 1000)]))
            print("ok", flush=True)
        elif mode == "sync":
            sync(stack, args[0], int(args[1]))
        else:
            dump(stack)


if __name__ == "__main__":
    main()
