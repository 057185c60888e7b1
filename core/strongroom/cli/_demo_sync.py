"""The sync part of ``strongroom demo``: two devices through the reference server on loopback.

In the demo's temporary directory it makes a throwaway CA and a server
certificate for 127.0.0.1 (:mod:`strongroom.cli._demo_pki`), serves
``strongroom_contrib.server.create_app`` over ``sqlite`` storage and the
``memory`` nonce cache with uvicorn in a thread on a free port, and builds
two device stacks of one account, each pinned to that server and signing
with its own key id, registered on the server as ``strongroom serve devices
add`` does.  Then: records and a blob synced from one device to the other,
a conflicting write, a captured request replayed, and the server's database
file searched for every plaintext.

It needs the ``server`` extra (Starlette, uvicorn, httpx; ``https`` is
httpx alone), imported by name so the core never depends on it: without
it, :func:`sync_story` says so in one line and returns.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

from strongroom._stack import Strongroom
from strongroom.cli._demo_pki import DemoPki, make_demo_pki
from strongroom.config import BUILTIN_SOURCE, parse_config
from strongroom.hookspecs import hookimpl
from strongroom.keys.purposes import SIGNING
from strongroom.signing.headers import REJECTED
from strongroom.signing.keying import derive_mac_key, wire_key_id
from strongroom.sync import Syncer
from strongroom.transport import SyncRequest, SyncResponse

__all__ = ["PLAINTEXTS", "SERVER_DATABASE", "missing_extra", "sync_story"]

#: What the sync part imports, in the order a missing one is named.
EXTRAS = ("httpx", "starlette", "uvicorn", "strongroom_contrib.server")
ACCOUNT = "demo"
STORE = "default"
SHOPPING = "notes/shopping"
RECORDS = {SHOPPING: b"eggs, flour, milk", "notes/door-code": b"the door code is 4711-0815"}
BLOB_KEY = "photos/holiday.jpg"
BLOB_ROW = b"strongroom demo: holiday photo, row "
BLOB = b"".join(BLOB_ROW + b"%08d\n" % row for row in range(1 << 15))  # 1.4 MiB
LAPTOP_EDIT = b"eggs, flour, milk, butter"
PHONE_EDIT = b"eggs, flour, oat milk"
#: Every plaintext the devices sync: values, key names, the blob's content.
PLAINTEXTS = (
    *RECORDS.values(),
    *(name.encode() for name in RECORDS),
    BLOB_KEY.encode(),
    BLOB_ROW,
    LAPTOP_EDIT,
    PHONE_EDIT,
)
#: The server's database, relative to the demo's directory.
SERVER_DATABASE = Path("server") / "sync.db"
_CHUNK = 256 << 10
_START_TIMEOUT_S = 10.0

Say = Callable[[str], None]


def missing_extra() -> str | None:
    """The first module of the ``server`` extra that does not import, or ``None``."""
    for name in EXTRAS:
        try:
            import_module(name)
        except ImportError as exc:
            return exc.name or name
    return None


def sync_story(root: Path, say: Say) -> None:
    """Run the sync part under ``root`` (the server's database stays there); see the docstring."""
    missing = missing_extra()
    if missing is not None:
        say(
            f"sync: skipped, it needs the server and https extras ({missing} is missing): "
            "pip install 'strongroom[server]'"
        )
        return
    pki = make_demo_pki(root / "pki")
    database = root / SERVER_DATABASE
    database.parent.mkdir()
    server = Strongroom(
        parse_config(
            {
                "server_storage": {"use": "sqlite", "path": str(database)},
                "nonce_cache": {"use": "memory"},
            },
            source=BUILTIN_SOURCE,
            environ={},
        )
    )
    try:
        with _serving(server, pki) as url:
            say(
                f"sync server: the reference server (what 'strongroom serve' runs) on {url}, "
                "sqlite storage and a memory nonce cache, TLS from a throwaway CA"
            )
            say(
                f"pins: both devices trust only that CA and pin its key {pki.root_pin} "
                f"and the server's {pki.leaf_pin}"
            )
            _devices(root, url, pki, server, say)
    finally:
        server.close()
    _search_database(database, say)


@contextmanager
def _serving(server: Strongroom, pki: DemoPki) -> Iterator[str]:
    """The reference app under uvicorn over TLS in a thread; stopped and joined at the end."""
    import uvicorn

    create_app = import_module("strongroom_contrib.server").create_app
    app = create_app(server.server_storage, server.nonce_cache)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        ssl_certfile=str(pki.cert_chain),
        ssl_keyfile=str(pki.key),
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
        ws="none",
        http="h11",
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(
        target=uvicorn_server.run,
        kwargs={"sockets": [listener]},
        name="strongroom-demo-server",
        daemon=True,  # a safety net only: it is joined below
    )
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not uvicorn_server.started:
            _check(thread.is_alive() and time.monotonic() < deadline, "the server did not start")
            time.sleep(0.01)
        yield f"https://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(_START_TIMEOUT_S)
        listener.close()
    _check(not thread.is_alive(), "the server thread did not stop")


def _devices(root: Path, url: str, pki: DemoPki, server: Strongroom, say: Say) -> None:
    from strongroom.cli.demo import _demo_config

    stacks = []
    try:
        for name in ("laptop-1", "phone-1"):
            transport = {
                "use": "https",
                "url": url,
                "ca_bundle": str(pki.ca_bundle),
                "pins": {"127.0.0.1": {"pins": [pki.leaf_pin, pki.root_pin]}},
            }
            config = _demo_config(root / name, transport=transport, signing={"key_id": name})
            stack = Strongroom(config)
            stacks.append(stack)
            stack.initialise()
            key = stack.keys.data_key(SIGNING)
            mac = derive_mac_key(key.material.view(), ACCOUNT, key.version)
            server.server_storage.register_device(ACCOUNT, wire_key_id(name, key.version), mac)
        say(
            f"devices: laptop-1.v1 and phone-1.v1 of account {ACCOUNT!r}, each with its own "
            "data directory, and its request-signing key registered on the server as "
            "'strongroom serve devices add' does"
        )
        laptop, phone = stacks
        _sync(laptop, phone, server, say)
    finally:
        for stack in stacks:
            stack.close()


class _Recorder:
    """A hook plugin keeping the pushes a device sent, as signed, to replay one."""

    def __init__(self) -> None:
        self.pushes: list[SyncRequest] = []

    @hookimpl
    def strongroom_check_response(self, request: SyncRequest, response: SyncResponse) -> None:
        if request.path.endswith("/push") and response.status == 200:
            self.pushes.append(request)


def _sync(laptop: Strongroom, phone: Strongroom, server: Strongroom, say: Say) -> None:
    recorder = _Recorder()
    laptop.plugin_manager.register(recorder, name="strongroom.demo.recorder")
    laptop_sync = Syncer(laptop, STORE, chunk_size=_CHUNK)
    phone_sync = Syncer(phone, STORE, chunk_size=_CHUNK)
    try:
        laptop_store, phone_store = laptop_sync.store, phone_sync.store
        for key, value in RECORDS.items():
            laptop_store.put(key, value)
        laptop_store.put_blob(BLOB_KEY, [BLOB[i : i + _CHUNK] for i in range(0, len(BLOB), _CHUNK)])
        laptop_sync.create_key()
        sent = laptop_sync.sync()
        _check(len(sent.pushed) == 3 and not sent.errors, "the laptop did not push everything")
        say(
            f"laptop: put 2 records and a {len(BLOB) / (1 << 20):.1f} MiB blob, made the "
            f"account's sync key, synced: pushed {len(sent.pushed)}, {sent.chunks_sent} "
            "encrypted chunk(s) uploaded"
        )

        phone_sync.import_key(laptop_sync.export_key())
        got = phone_sync.sync()
        same = all(phone_store.get(key) == value for key, value in RECORDS.items())
        _check(same and b"".join(phone_store.get_blob(BLOB_KEY)) == BLOB, "the phone differs")
        say(
            "phone: imported the sync key (one line, moved out of band, never through the "
            f"server), synced: pulled {len(got.pulled)}, {got.chunks_fetched} chunk(s) checked "
            "against the sealed manifest; both records and the blob read back equal"
        )

        laptop_store.put(SHOPPING, LAPTOP_EDIT)
        phone_store.put(SHOPPING, PHONE_EDIT)
        phone_sync.sync()
        lost = laptop_sync.sync()
        _check(
            lost.conflicts == [SHOPPING]
            and laptop_store.get(SHOPPING) == phone_store.get(SHOPPING) == PHONE_EDIT
            and laptop_sync.conflict_value(SHOPPING) == LAPTOP_EDIT,
            "the conflict rule did not hold",
        )
        say(
            f"conflict: both devices edited {SHOPPING}; the phone synced first, so its version "
            "is the server's and wins on both devices; the laptop keeps its losing write as a "
            "conflict copy for the application to resolve"
        )
        _replay(laptop, recorder.pushes[0], server, say)
    finally:
        laptop_sync.close()
        phone_sync.close()


def _replay(device: Strongroom, captured: SyncRequest, server: Strongroom, say: Say) -> None:
    before = server.server_storage.pull(ACCOUNT).cursor
    answer = device.transport.send(captured)  # the same bytes: signature, timestamp, nonce
    headers = {name.lower(): value for name, value in answer.headers.items()}
    refused = answer.status == 401 and headers.get(REJECTED.lower()) == "replay"
    _check(refused, f"a replayed request was answered {answer.status}")
    _check(server.server_storage.pull(ACCOUNT).cursor == before, "a replayed push was applied")
    say(
        "replayed the laptop's first push byte for byte (same signature, timestamp and nonce): "
        "the server refused it, 401 replay, and applied nothing"
    )


def _search_database(database: Path, say: Say) -> None:
    files = sorted(path for path in database.parent.iterdir() if path.is_file())
    raw = b"".join(path.read_bytes() for path in files)
    found = [text for text in PLAINTEXTS if text in raw or text.hex().encode() in raw.lower()]
    _check(not found and b"strongroom_objects" in raw, "the server's database holds plaintext")
    names = ", ".join(path.name for path in files)
    say(
        f"server database: searched its raw bytes ({names}, {len(raw)} bytes) for the "
        f"{len(PLAINTEXTS)} plaintexts (record values, key names, blob content): none found, "
        "only ciphertext under opaque ids"
    )


def _check(condition: bool, failure: str) -> None:
    """The demo checks its own story; a broken step is a bug, not a user error."""
    if not condition:
        raise RuntimeError(failure)
