"""The reference sync server over real TLS: uvicorn, the middleware, SQLite, signed clients.

One server for the module (``create_app`` under ``serve_asgi``) with three
devices: alice's phone, bob's phone and alice's retired tablet.  Records
are sealed on the client before they are pushed; the test then reads the
server's database file for the plaintext.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from asgi_client import Device
from strongroom.errors import ServerStorageUnavailableError
from strongroom.signing import headers as h
from strongroom_contrib.server import create_app
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from strongroom_plugins.server_stores.sqlite import (
    SqliteServerStorage,
    SqliteServerStorageSettings,
)
from sync_client import SyncClient, chunk_hashes, decoded, encoded, seal_record
from tls_servers import Pki, make_pki, serve_asgi

ALICE = Device(bytes(range(32)), "alice-phone.v1")
BOB = Device(bytes(range(1, 33)), "bob-phone.v1")
TABLET = Device(bytes(range(2, 34)), "alice-tablet.v1")
MARKER = b"PLAINTEXT-MARKER-7d41"


class SwitchableStorage(SqliteServerStorage):
    """SQLite that can be made unreachable, as a database behind a cut network is."""

    down = False
    writes_fail = False

    def transaction(self, work: Any, *, write: bool = True) -> Any:
        if self.down or (write and self.writes_fail):
            raise ServerStorageUnavailableError("the test cut the database off")
        return super().transaction(work, write=write)


@dataclass
class Server:
    url: str
    storage: SwitchableStorage
    path: Path
    http: httpx.Client
    ca_bundle: Path
    pki: Pki

    def client(self, account: str, device: Device) -> SyncClient:
        return SyncClient(self.http, self.url, account, device)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("sync-server")
    pki: Pki = make_pki(root / "pki")
    path = root / "server.sqlite3"
    storage = SwitchableStorage(SqliteServerStorageSettings(path=str(path)))
    storage.register_device("alice", ALICE.key_id, ALICE.key)
    storage.register_device("bob", BOB.key_id, BOB.key)
    storage.register_device("alice", TABLET.key_id, TABLET.key)
    storage.retire_device("alice", TABLET.key_id)
    cache = MemoryNonceCache()
    app = create_app(storage, cache, challenge_secret=secrets.token_bytes(32))
    context = ssl.create_default_context(cafile=pki.ca_bundle)
    with serve_asgi(app, pki.server) as url, httpx.Client(verify=context, timeout=20) as http:
        yield Server(url, storage, path, http, pki.ca_bundle, pki)
    storage.close()


def fresh_account(server: Server, device: Device) -> SyncClient:
    """A new account holding ``device`` under a new key id (accounts do not share test state)."""
    key_id = f"{device.key_id.split('.')[0]}-{secrets.token_hex(4)}.v1"
    account = f"acct-{secrets.token_hex(4)}"
    server.storage.register_device(account, key_id, device.key)
    return server.client(account, Device(device.key, key_id))


def test_push_and_pull_round_trip_with_signed_answers(server: Server) -> None:
    client = fresh_account(server, ALICE)
    sealed = seal_record(b"k" * 32, client.account, "note-1", b"hello " + MARKER)
    pushed = client.push(("note-1", sealed, 0), ("note-2", b"\x00opaque", None))
    assert pushed.response.status_code == 200
    assert pushed.signed_at is not None
    assert decoded(pushed) == {
        "results": [
            {"key": "note-1", "seq": 1, "conflict": False},
            {"key": "note-2", "seq": 2, "conflict": False},
        ]
    }
    deleted = client.push(("note-2", None, 2))
    assert decoded(deleted)["results"] == [{"key": "note-2", "seq": 3, "conflict": False}]
    page = decoded(client.pull())
    assert page == {
        "entries": [
            {"key": "note-1", "seq": 1, "kind": "record", "value": sealed},
            {"key": "note-2", "seq": 3, "kind": "deleted", "value": None},
        ],
        "next": 3,
        "more": False,
    }
    first = decoded(client.pull(after=0, limit=1))
    assert (first["next"], first["more"], len(first["entries"])) == (1, True, 1)
    assert decoded(client.pull(after=3)) == {"entries": [], "next": 3, "more": False}


def test_a_conflict_is_reported_and_not_applied(server: Server) -> None:
    client = fresh_account(server, ALICE)
    client.push(("k", b"v1", 0))
    client.push(("k", b"v2", 1))
    stale = client.push(("k", b"offline edit", 1), ("other", b"x", 0))
    assert decoded(stale)["results"] == [
        {"key": "k", "seq": 2, "conflict": True},
        {"key": "other", "seq": 3, "conflict": False},
    ]
    assert decoded(client.pull())["entries"][0] == {
        "key": "k",
        "seq": 2,
        "kind": "record",
        "value": b"v2",
    }


def drop_mid_body(server: Server, client: SyncClient, upload: str, index: int, data: bytes) -> None:
    """Send a signed chunk upload's headers and half its body, then cut the connection."""
    path = f"/v1/accounts/{client.account}/uploads/{upload}/chunks/{index}"
    signed = client.device.sign("PUT", path, data, "drop-1")
    host, port = server.url.removeprefix("https://").split(":")
    raw = ssl.create_default_context(cafile=server.ca_bundle)
    with (
        socket.create_connection((host, int(port))) as plain,
        raw.wrap_socket(plain, server_hostname=host) as tls,
    ):
        lines = [f"PUT {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
        lines += [f"{name}: {value}" for name, value in signed.items()]
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data[: len(data) // 2])


def test_a_blob_upload_resumes_after_a_dropped_connection(server: Server) -> None:
    client = fresh_account(server, ALICE)
    chunks = [secrets.token_bytes(1000) for _ in range(3)]
    begun = decoded(client.begin("photos/cat.jpg", b"manifest", chunks))
    upload = begun["upload"]
    assert begun["missing"] == [0, 1, 2]
    assert client.put_chunk(upload, 0, chunks[0]).response.status_code == 204
    drop_mid_body(server, client, upload, 1, chunks[1])
    resumed = decoded(client.begin("photos/cat.jpg", b"manifest", chunks))
    assert resumed == {"upload": upload, "missing": [1, 2]}
    incomplete = client.commit(upload, 0)
    assert (incomplete.response.status_code, decoded(incomplete)) == (409, {"error": "incomplete"})
    for index in resumed["missing"]:
        assert client.put_chunk(upload, index, chunks[index]).response.status_code == 204
    assert decoded(client.missing(upload)) == {"missing": []}
    committed = client.commit(upload, 0)
    assert decoded(committed) == {"key": "photos/cat.jpg", "seq": 1, "conflict": False}
    manifest = decoded(client.blob("photos/cat.jpg"))
    assert manifest == {"seq": 1, "manifest": b"manifest", "chunk_hashes": chunk_hashes(chunks)}
    for index, chunk in enumerate(chunks):
        fetched = client.chunk("photos/cat.jpg", index)
        assert fetched.response.content == chunk
        assert fetched.signed_at is not None
    entries = decoded(client.pull())["entries"]
    assert entries == [{"key": "photos/cat.jpg", "seq": 1, "kind": "blob", "value": b"manifest"}]


def test_a_chunk_with_the_wrong_hash_is_refused_422(server: Server) -> None:
    client = fresh_account(server, ALICE)
    chunks = [b"a" * 100, b"b" * 100]
    upload = decoded(client.begin("doc", b"m", chunks))["upload"]
    wrong = client.put_chunk(upload, 0, b"c" * 100)
    assert (wrong.response.status_code, decoded(wrong)) == (422, {"error": "hash"})
    assert decoded(client.missing(upload)) == {"missing": [0, 1]}
    out_of_range = client.put_chunk(upload, 7, b"a" * 100)
    assert out_of_range.response.status_code == 400


def test_keys_with_slashes_and_non_ascii_stay_one_segment(server: Server) -> None:
    client = fresh_account(server, ALICE)
    key = "dir/sub dir/naïve%2F?#"
    chunks = [b"only chunk"]
    upload = decoded(client.begin(key, b"m", chunks))["upload"]
    client.put_chunk(upload, 0, chunks[0])
    assert decoded(client.commit(upload))["key"] == key
    assert client.chunk(key, 0).response.content == b"only chunk"
    assert client.blob("dir").response.status_code == 404


def test_another_accounts_device_gets_403_everywhere_and_nothing_changes(server: Server) -> None:
    alice = fresh_account(server, ALICE)
    alice.push(("secret", b"alice's ciphertext", 0))
    chunks = [b"x" * 10, b"y" * 10]
    upload = decoded(alice.begin("blob", b"m", chunks))["upload"]
    alice.put_chunk(upload, 0, chunks[0])
    committed_upload = decoded(alice.begin("done", b"m", [b"z"]))["upload"]
    alice.put_chunk(committed_upload, 0, b"z")
    alice.commit(committed_upload, 0)
    before = decoded(alice.pull())
    mallory = server.client(alice.account, BOB)  # bob's own, valid device, aimed at alice
    attempts = [
        mallory.pull(),
        mallory.push(("secret", b"overwritten", None)),
        mallory.push(("new", b"planted", None)),
        mallory.begin("blob", b"m", chunks),
        mallory.put_chunk(upload, 1, chunks[1]),
        mallory.missing(upload),
        mallory.commit(upload),
        mallory.blob("done"),
        mallory.chunk("done", 0),
        mallory.challenge("op-1"),
    ]
    assert [answer.response.status_code for answer in attempts] == [403] * len(attempts)
    assert all(decoded(answer) == {"error": "account"} for answer in attempts)
    assert all(answer.signed_at is not None for answer in attempts)
    assert decoded(alice.pull()) == before
    assert decoded(alice.missing(upload)) == {"missing": [1]}


def test_a_retired_device_is_refused_401(server: Server) -> None:
    tablet = server.client("alice", TABLET)
    refused = tablet.pull()
    assert refused.response.status_code == 401
    assert refused.response.headers[h.REJECTED] == "signature"
    unknown = server.client("alice", Device(bytes(32), "never-registered.v1")).pull()
    assert unknown.response.status_code == 401


def test_health_and_ready_are_unsigned_and_ready_fails_with_the_storage(server: Server) -> None:
    health = server.http.get(server.url + "/v1/health")
    ready = server.http.get(server.url + "/v1/ready")
    assert (health.status_code, ready.status_code) == (200, 200)
    assert h.RESPONSE_SIGNATURE not in health.headers
    server.storage.down = True
    try:
        assert server.http.get(server.url + "/v1/ready").status_code == 503
        assert server.http.get(server.url + "/v1/health").status_code == 200
    finally:
        server.storage.down = False
    assert server.http.get(server.url + "/v1/ready").status_code == 200


def test_a_storage_that_cannot_answer_is_503_and_nothing_is_applied(server: Server) -> None:
    client = fresh_account(server, ALICE)
    client.push(("k", b"v1", 0))
    before = decoded(client.pull())
    server.storage.down = True
    try:
        refused = client.push(("k", b"v2", None))
        assert refused.response.status_code == 503
        assert refused.response.headers[h.REJECTED] == "unavailable"
    finally:
        server.storage.down = False
    server.storage.writes_fail = True  # the device is found, the push's transaction fails
    try:
        failed = client.push(("k", b"v3", None))
        assert (failed.response.status_code, decoded(failed)) == (503, {"error": "unavailable"})
        assert failed.signed_at is not None
    finally:
        server.storage.writes_fail = False
    assert decoded(client.pull()) == before


def test_a_signed_challenge_token_must_be_valid_for_its_operation(server: Server) -> None:
    client = fresh_account(server, ALICE)
    forged = client.push(("k", b"v", 0), idempotency_key="op-a", challenge="v1.1.never.issued")
    assert (forged.response.status_code, decoded(forged)) == (428, {"error": "challenge"})
    token = decoded(client.challenge("op-a"))["token"]
    done = client.push(("k", b"v", 0), idempotency_key="op-a", challenge=token)
    assert done.response.status_code == 200
    assert [entry["key"] for entry in decoded(client.pull())["entries"]] == ["k"]


def test_a_proxy_stripping_or_changing_the_challenge_token_gets_401_signature(
    server: Server,
) -> None:
    client = fresh_account(server, ALICE)
    token = decoded(client.challenge("op-strip"))["token"]
    other = decoded(client.challenge("op-other"))["token"]
    path = f"/v1/accounts/{client.account}/push"
    body = encoded({"changes": [{"key": "k", "value": b"v", "base_seq": 0}]})
    signed = client.device.sign("POST", path, body, "op-strip", token)
    stripped = {name: value for name, value in signed.items() if name != h.CHALLENGE}
    changed = client.device.sign("POST", path, body, "op-strip", token) | {h.CHALLENGE: other}
    unsigned = client.device.sign("POST", path, body, "op-strip") | {h.CHALLENGE: token}
    device, http, url = client.device, server.http, server.url
    answers = [
        device.resend(http, url, "POST", path, body, sent=headers)
        for headers in (stripped, changed, unsigned)
    ]
    assert [answer.response.status_code for answer in answers] == [401] * 3
    assert all(answer.response.headers[h.REJECTED] == "signature" for answer in answers)
    assert decoded(client.pull())["entries"] == []
    # the token was not spent by the refused requests: the client's own request runs
    done = device.resend(http, url, "POST", path, body, sent=signed)
    assert done.response.status_code == 200


def test_a_challenge_token_moved_to_another_operation_is_refused(server: Server) -> None:
    client = fresh_account(server, ALICE)
    token = decoded(client.challenge("op-a"))["token"]
    moved = client.push(("k", b"v", 0), idempotency_key="op-b", challenge=token)
    assert (moved.response.status_code, decoded(moved)) == (428, {"error": "challenge"})
    bob = fresh_account(server, BOB)
    stolen = bob.push(("k", b"v", 0), idempotency_key="op-a", challenge=token)
    assert stolen.response.status_code == 428
    assert decoded(client.pull())["entries"] == []


def test_a_replayed_challenge_token_is_refused(server: Server) -> None:
    client = fresh_account(server, ALICE)
    token = decoded(client.challenge("op-a"))["token"]
    server.storage.writes_fail = True  # redeemed, then the push fails: 503, not kept
    try:
        failed = client.push(("k", b"v", 0), idempotency_key="op-a", challenge=token)
        assert failed.response.status_code == 503
    finally:
        server.storage.writes_fail = False
    # the same token, signed afresh on the retry of the same operation: spent
    replayed = client.push(("k", b"v", 0), idempotency_key="op-a", challenge=token)
    assert (replayed.response.status_code, decoded(replayed)) == (428, {"error": "challenge"})
    assert decoded(client.pull())["entries"] == []
    fresh = decoded(client.challenge("op-a"))["token"]
    done = client.push(("k", b"v", 0), idempotency_key="op-a", challenge=fresh)
    assert done.response.status_code == 200
    again = client.push(("k2", b"v", 0), idempotency_key="op-b", challenge=fresh)
    assert again.response.status_code == 428
    assert [entry["key"] for entry in decoded(client.pull())["entries"]] == ["k"]


def test_malformed_bodies_and_queries_are_400(server: Server) -> None:
    client = fresh_account(server, ALICE)
    answers = [
        client.call("POST", "/push", b"not msgpack"),
        client.call("POST", "/push", encoded({"changes": [{"key": "k"}]})),
        client.call("POST", "/push", encoded({"changes": [], "extra": 1})),
        client.call(
            "POST", "/push", encoded({"changes": [{"key": "k", "value": b"", "base_seq": -1}]})
        ),
        client.call("GET", "/changes?after=-1"),
        client.call("GET", "/changes?after=0&limit=0"),
        client.call("GET", "/changes?cursor=1"),
        client.call(
            "POST", "/uploads", encoded({"key": "b", "manifest": b"m", "chunk_hashes": [b"short"]})
        ),
    ]
    assert [answer.response.status_code for answer in answers] == [400] * len(answers)
    unknown = client.call("GET", "/nothing-here")
    assert (unknown.response.status_code, decoded(unknown)) == (404, {"error": "not-found"})
    wrong_method = client.call("DELETE", "/push")
    assert (wrong_method.response.status_code, decoded(wrong_method)) == (405, {"error": "method"})
    assert wrong_method.signed_at is not None


def test_the_database_holds_no_plaintext_the_client_sealed(server: Server) -> None:
    client = fresh_account(server, ALICE)
    sealed = seal_record(secrets.token_bytes(32), client.account, "diary", b"dear diary " + MARKER)
    assert MARKER not in sealed
    assert client.push(("diary", sealed, 0)).response.status_code == 200
    stored = b"".join(path.read_bytes() for path in server.path.parent.glob(server.path.name + "*"))
    assert sealed in stored  # in the main file or its WAL
    assert MARKER not in stored


def test_access_log_lines_carry_no_body_query_signature_or_token(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    client = fresh_account(server, ALICE)
    caplog.set_level(logging.INFO, logger="strongroom.access")
    token = decoded(client.challenge("op-log"))["token"]
    pushed = client.push(
        ("k", b"BODY-MARKER-1", 0),
        idempotency_key="op-log",
        challenge=token,
    )
    pulled = client.pull(after=0, limit=77)
    lines = [record.getMessage() for record in caplog.records if record.name == "strongroom.access"]
    assert len(lines) >= 3
    text = "\n".join(lines)
    secrets_sent = [
        "BODY-MARKER-1",
        token,
        "limit=77",
        pushed.sent[h.SIGNATURE],
        pushed.sent[h.NONCE],
        pulled.sent[h.SIGNATURE],
        "op-log",
    ]
    assert [item for item in secrets_sent if item in text] == []
    assert f"key_id={client.device.key_id}" in text


def test_a_challenge_token_is_single_use_for_every_process_holding_the_secret() -> None:
    from strongroom_contrib.server._challenges import TTL_S, Challenges

    secret, cache = secrets.token_bytes(32), MemoryNonceCache()
    now = [1_900_000_000.0]
    one = Challenges(secret, cache, clock=lambda: now[0])
    two = Challenges(secret, cache, clock=lambda: now[0])  # another process, one shared cache
    token, expires = one.issue("alice", "phone.v1", "op-1")
    assert expires == int(now[0]) + TTL_S
    assert not two.redeem(token, "bob", "phone.v1", "op-1")
    assert not two.redeem(token, "alice", "tablet.v1", "op-1")
    assert not two.redeem(token, "alice", "phone.v1", "op-2")
    assert not two.redeem(token[:-2] + "AA", "alice", "phone.v1", "op-1")
    assert (
        Challenges(secrets.token_bytes(32), cache).redeem(token, "alice", "phone.v1", "op-1")
        is False
    )
    assert two.redeem(token, "alice", "phone.v1", "op-1")
    assert not one.redeem(token, "alice", "phone.v1", "op-1")  # spent, on every process
    late, _ = one.issue("alice", "phone.v1", "op-3")
    now[0] += TTL_S + 1
    assert not one.redeem(late, "alice", "phone.v1", "op-3")


def test_a_device_stack_syncs_through_strongroom_send_over_pinned_tls(
    server: Server, tmp_path: Path
) -> None:
    """The device side as shipped: ``[signing]``, the pinned ``https`` transport, ``send``."""
    from strongroom import Strongroom, load_config
    from strongroom.keys.purposes import SIGNING
    from strongroom.signing.keying import derive_mac_key, wire_key_id
    from strongroom.transport import SyncRequest

    account = f"dev{secrets.token_hex(4)}"
    config = tmp_path / "device.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\naccount = "{account}"\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        '[stores.notes]\nuse = "files"\n'
        f'[transport]\nuse = "https"\nurl = "{server.url}"\nca_bundle = "{server.pki.ca_bundle}"\n'
        '[transport.pins."127.0.0.1"]\n'
        f'pins = ["{server.pki.leaf_pin}", "{server.pki.intermediate_pin}"]\n'
        '[signing]\nkey_id = "desk"\n'
    )
    passphrase = "sync server end to end 4411"  # noqa: S105 - the test's own
    with Strongroom(load_config(config, environ={}), secrets={"main": passphrase}) as stack:
        stack.initialise()
        data_key = stack.keys.data_key(SIGNING)
        key = derive_mac_key(data_key.material.view(), account, data_key.version)
        server.storage.register_device(account, wire_key_id("desk", data_key.version), key)
        sealed = seal_record(secrets.token_bytes(32), account, "n", b"via send " + MARKER)
        body = encoded({"changes": [{"key": "n", "value": sealed, "base_seq": 0}]})
        pushed = stack.send(
            SyncRequest("POST", f"/v1/accounts/{account}/push", body, {h.IDEMPOTENCY_KEY: "p-1"})
        )
        assert pushed.status == 200
        pulled = stack.send(SyncRequest("GET", f"/v1/accounts/{account}/changes?after=0"))
        assert pulled.status == 200
        entries = msgspec.msgpack.decode(pulled.body)["entries"]
        assert entries == [{"key": "n", "seq": 1, "kind": "record", "value": sealed}]
        foreign = stack.send(SyncRequest("GET", "/v1/accounts/alice/changes?after=0"))
        assert foreign.status == 403
