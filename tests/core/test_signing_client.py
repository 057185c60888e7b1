"""The client side of request signing: ``Strongroom.send`` with a ``[signing]`` table.

The stack is built from a config file and talks to a verifier through a
``loopback`` transport that a test distribution registers, as a third party
would; the test hands that transport the server (``transport.handler``).
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import MakeDistribution
from strongroom import Strongroom, load_config
from strongroom.errors import (
    ClockSkewError,
    ConfigError,
    IntegrityError,
    KeyLockedError,
    NonceCacheUnavailableError,
    PluginError,
    RequestRefusedError,
    RequestVerificationError,
    UsageError,
)
from strongroom.hookspecs import hookimpl
from strongroom.keys.purposes import SIGNING
from strongroom.signing import headers as h
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest, SyncResponse
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache

PASSPHRASE = "alice's signing passphrase 9d2e"  # noqa: S105 - a test's own

LOOPBACK = """
from strongroom.transport import Transport


class Loopback(Transport):
    \"\"\"Hands each request to ``handler(request) -> response``, which the test sets.\"\"\"

    handler = None

    def send(self, request):
        return self.handler(request)
"""

Server = Callable[[SyncRequest], SyncResponse]


def config_text(root: Path, signing: str = 'key_id = "phone-1"\n') -> str:
    return (
        f'[strongroom]\ndata_dir = "{root / "data"}"\naccount = "alice"\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        '[stores.notes]\nuse = "files"\n'
        '[transport]\nuse = "loopback"\n'
        f"[signing]\n{signing}"
    )


@pytest.fixture
def config_file(tmp_path: Path, make_distribution: MakeDistribution) -> Path:
    make_distribution(
        "loopback-transport",
        entry_points={"strongroom.transports": {"loopback": "loopback_transport:Loopback"}},
        modules={"loopback_transport": LOOPBACK},
    )
    path = tmp_path / "strongroom.toml"
    path.write_text(config_text(tmp_path))
    return path


@pytest.fixture
def stack(config_file: Path) -> Iterator[Strongroom]:
    with Strongroom(load_config(config_file, environ={}), secrets={"main": PASSPHRASE}) as stack:
        assert SIGNING in stack.initialise()
        yield stack


class Verifying:
    """A sync server: the verifier in front of a handler; it signs what it answers."""

    def __init__(self, stack: Strongroom, clock: Callable[[], float] | None = None) -> None:
        data_key = stack.keys.data_key(SIGNING)
        mac = derive_mac_key(data_key.material.view(), "alice", data_key.version)
        self.ring = KeyRing({f"phone-1.v{data_key.version}": mac})
        self.verifier = RequestVerifier(self.ring, MemoryNonceCache(), **_clock(clock))
        self.seen: list[SyncRequest] = []
        self.refusals: list[RequestVerificationError] = []
        #: Changes the signed response on its way back (a TLS-terminating proxy).
        self.in_transit: Callable[[SyncResponse], SyncResponse] = lambda response: response

    def __call__(self, request: SyncRequest) -> SyncResponse:
        self.seen.append(request)
        try:
            verified = self.verifier.verify(
                request.method, request.path, request.headers, request.body
            )
        except RequestVerificationError as refused:
            self.refusals.append(refused)
            status, headers, body = self.verifier.rejection(refused)
            return self.in_transit(SyncResponse(status, body, headers))
        body = json.dumps({"echo": request.body.decode()}).encode()
        headers = self.verifier.sign_response(verified, 200, body)
        return self.in_transit(SyncResponse(200, body, headers))


def _clock(clock: Callable[[], float] | None) -> dict[str, Callable[[], float]]:
    return {} if clock is None else {"clock": clock}


def serve(stack: Strongroom, server: Server) -> None:
    stack.transport.handler = server  # type: ignore[attr-defined]


def test_send_signs_and_the_verifier_accepts(stack: Strongroom) -> None:
    server = Verifying(stack)
    serve(stack, server)
    request = SyncRequest("POST", "/v1/sync?since=3", b"payload", {h.IDEMPOTENCY_KEY: "op-1"})
    response = stack.send(request)
    assert (response.status, json.loads(response.body)) == (200, {"echo": "payload"})
    sent = server.seen[0]
    assert sent.headers[h.KEY_ID] == "phone-1.v1"
    assert sent.headers[h.IDEMPOTENCY_KEY] == "op-1"
    assert server.refusals == []
    assert request.headers == {h.IDEMPOTENCY_KEY: "op-1"}  # the caller's request is unchanged


def test_a_response_altered_in_transit_is_rejected(stack: Strongroom) -> None:
    server = Verifying(stack)
    serve(stack, server)
    alterations = {
        "body": lambda r: SyncResponse(r.status, r.body + b" ", r.headers),
        "status": lambda r: SyncResponse(201, r.body, r.headers),
        "server time": lambda r: SyncResponse(
            r.status, r.body, {**r.headers, h.SERVER_TIME: str(int(r.headers[h.SERVER_TIME]) + 1)}
        ),
    }
    for name, alter in alterations.items():
        server.in_transit = alter
        with pytest.raises(IntegrityError, match="failed its signature check") as rejected:
            stack.send(SyncRequest("GET", "/v1/items"))
        assert "status" in str(rejected.value), name


def test_a_response_signed_for_another_request_is_rejected(stack: Strongroom) -> None:
    server = Verifying(stack)
    kept: list[SyncResponse] = []

    def replay_first_answer(response: SyncResponse) -> SyncResponse:
        if not kept:
            kept.append(response)
        return kept[0]

    server.in_transit = replay_first_answer
    serve(stack, server)
    stack.send(SyncRequest("GET", "/v1/items"))
    with pytest.raises(IntegrityError, match="failed its signature check"):
        stack.send(SyncRequest("GET", "/v1/items"))


def test_an_unsigned_response_is_rejected_when_required(stack: Strongroom) -> None:
    serve(stack, lambda request: SyncResponse(200, b"{}", {"content-type": "application/json"}))
    with pytest.raises(IntegrityError, match=r"status 200\) is not signed"):
        stack.send(SyncRequest("GET", "/v1/items"))


def test_responses_off_accepts_an_unsigned_response_but_not_a_wrong_one(
    tmp_path: Path, make_distribution: MakeDistribution, config_file: Path
) -> None:
    config_file.write_text(config_text(tmp_path, 'key_id = "phone-1"\nresponses = "off"\n'))
    with Strongroom(load_config(config_file, environ={}), secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
        serve(stack, lambda request: SyncResponse(204))
        assert stack.send(SyncRequest("DELETE", "/v1/items/7")).status == 204
        server = Verifying(stack)
        server.in_transit = lambda r: SyncResponse(r.status, b"forged", r.headers)
        serve(stack, server)
        with pytest.raises(IntegrityError):
            stack.send(SyncRequest("GET", "/v1/items"))


def test_an_unsigned_refusal_says_the_server_refused_the_signature(stack: Strongroom) -> None:
    server = Verifying(stack)
    server.ring.retire("phone-1.v1")  # the server no longer knows this device's key
    serve(stack, server)
    with pytest.raises(RequestRefusedError, match="refused the request signature") as refused:
        stack.send(SyncRequest("GET", "/v1/items"))
    assert refused.value.status == 401
    assert "phone-1.v1" in str(refused.value)
    assert not isinstance(refused.value, ClockSkewError)


def test_a_signed_clock_skew_refusal_is_retried_once_with_the_servers_time(
    stack: Strongroom,
) -> None:
    import time

    server_clock = {"now": time.time() + 3_600}  # the device is an hour behind
    server = Verifying(stack, clock=lambda: server_clock["now"])
    serve(stack, server)
    response = stack.send(SyncRequest("PUT", "/v1/items/9", b"v"))
    assert response.status == 200
    assert [refused.reason for refused in server.refusals] == ["timestamp"]
    first, second = server.seen
    assert first.headers[h.NONCE] != second.headers[h.NONCE]
    assert abs(int(second.headers[h.TIMESTAMP]) - server_clock["now"]) <= 2
    # the offset sticks: the next request is right the first time
    stack.send(SyncRequest("GET", "/v1/items"))
    assert len(server.seen) == 3
    assert [refused.reason for refused in server.refusals] == ["timestamp"]


def test_a_skew_refusal_is_retried_only_once(stack: Strongroom) -> None:
    import time

    server = Verifying(stack)
    serve(stack, server)
    drift = {"seconds": 3_600.0}

    def moving(request: SyncRequest) -> SyncResponse:  # a server whose clock keeps jumping
        server.verifier._clock = lambda: time.time() + drift["seconds"]
        drift["seconds"] *= 2
        return server(request)

    serve(stack, moving)
    with pytest.raises(ClockSkewError) as refused:
        stack.send(SyncRequest("GET", "/v1/items"))
    assert refused.value.status == 401
    assert len(server.seen) == 2


def test_an_unsigned_skew_refusal_moves_no_clock(stack: Strongroom) -> None:
    def unsigned(request: SyncRequest) -> SyncResponse:
        body = b'{"error":"timestamp","server_time":1}'
        return SyncResponse(401, body, {h.REJECTED: "timestamp", h.SERVER_TIME: "1"})

    serve(stack, unsigned)
    with pytest.raises(RequestRefusedError) as refused:
        stack.send(SyncRequest("GET", "/v1/items"))
    assert not isinstance(refused.value, ClockSkewError)
    signer = stack.plugin_manager.get_plugin("strongroom.signing")
    assert signer.offset == 0.0


def test_a_replay_refusal_is_an_error_naming_it(stack: Strongroom) -> None:
    server = Verifying(stack)
    captured: list[SyncRequest] = []

    def replaying(request: SyncRequest) -> SyncResponse:
        if not captured:
            captured.append(request)
            server(request)  # the genuine request reaches the server first
        return server(captured[0])  # then the attacker's copy: the client sees the refusal

    serve(stack, replaying)
    with pytest.raises(RequestRefusedError, match="replay"):  # a POST is never repeated
        stack.send(SyncRequest("POST", "/v1/items", b"x"))


def test_signing_fails_closed(stack: Strongroom) -> None:
    sent: list[SyncRequest] = []

    def record(request: SyncRequest) -> SyncResponse:
        sent.append(request)
        return SyncResponse(200)

    serve(stack, record)

    class Clobber:
        @hookimpl
        def strongroom_sign_request(self, request: SyncRequest) -> dict[str, str]:
            return {"strongroom-signature": "A" * 43}

    stack.plugin_manager.register(Clobber(), name="clobber")
    with pytest.raises(PluginError, match="set twice"):
        stack.send(SyncRequest("GET", "/v1/items"))
    stack.plugin_manager.unregister(name="clobber")
    stack.plugin_manager.unregister(name="strongroom.signing")
    with pytest.raises(PluginError, match="no plugin signed the request; it was not sent"):
        stack.send(SyncRequest("GET", "/v1/items"))
    assert sent == []


def test_a_header_the_request_already_has_is_refused(stack: Strongroom) -> None:
    serve(stack, lambda request: SyncResponse(200))
    with pytest.raises(UsageError, match="set twice"):
        stack.send(SyncRequest("GET", "/v1/items", headers={"strongroom-nonce": "x"}))


def test_a_locked_account_cannot_sign(stack: Strongroom) -> None:
    serve(stack, Verifying(stack))
    stack.keys.lock()
    with pytest.raises(KeyLockedError):
        stack.send(SyncRequest("GET", "/v1/items"))


def test_the_mac_key_is_wiped_on_lock_and_rederived(stack: Strongroom) -> None:
    server = Verifying(stack)
    serve(stack, server)
    stack.send(SyncRequest("GET", "/v1/items"))
    signer = stack.plugin_manager.get_plugin("strongroom.signing")
    held = list(signer._macs.values())
    stack.keys.lock()
    assert all(mac.wiped for mac in held)
    stack.keys.unlock()
    stack.send(SyncRequest("GET", "/v1/items"))
    assert len(server.refusals) == 0


def test_rotating_the_keyset_signs_under_a_new_key_id(stack: Strongroom) -> None:
    server = Verifying(stack)
    serve(stack, server)
    stack.keys.rotate(SIGNING)
    data_key = stack.keys.data_key(SIGNING)
    server.ring.add("phone-1.v2", derive_mac_key(data_key.material.view(), "alice", 2))
    server.ring.retire("phone-1.v1")
    stack.send(SyncRequest("GET", "/v1/items"))
    assert server.seen[-1].headers[h.KEY_ID] == "phone-1.v2"


def test_unsignable_paths_are_usage_errors(stack: Strongroom) -> None:
    serve(stack, lambda request: SyncResponse(200))
    for path in ("v1/items", "/a/../b", "/a%zz"):
        with pytest.raises(UsageError, match="cannot be signed"):
            stack.send(SyncRequest("GET", path))


def test_the_signing_table_is_validated(tmp_path: Path, config_file: Path) -> None:
    for table, problem in [
        ("", "key 'key_id': missing required key"),
        ('key_id = "phone 1"\n', "key 'key_id'"),
        ('key_id = "p"\nresponses = "maybe"\n', "expected one of: required, off"),
        ('key_id = "p"\nwindow = 3\n', "unknown key"),
    ]:
        config_file.write_text(config_text(tmp_path, table))
        with pytest.raises(ConfigError, match=problem):
            load_config(config_file, environ={})


def test_no_key_or_secret_in_reprs_logs_or_errors(
    stack: Strongroom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Verifying(stack)
    serve(stack, server)
    request = SyncRequest("POST", "/v1/items", b"secret payload 51c9")
    stack.send(request)
    data_key = stack.keys.data_key(SIGNING)
    mac = derive_mac_key(data_key.material.view(), "alice", 1)
    secrets = [bytes(data_key.material.view()), mac]
    forms = [form for raw in secrets for form in _forms(raw)]
    signer = stack.plugin_manager.get_plugin("strongroom.signing")
    server.in_transit = lambda r: SyncResponse(r.status, r.body + b"!", r.headers)
    with pytest.raises(IntegrityError) as altered:
        stack.send(request)
    server.ring.retire("phone-1.v1")
    server.in_transit = lambda r: r
    with pytest.raises(RequestRefusedError) as refused:
        stack.send(request)
    texts = [
        repr(signer),
        repr(server.verifier),
        repr(server.ring),
        repr(server.seen[0]),
        str(altered.value),
        str(refused.value),
        *(str(error) for error in server.refusals),
        caplog.text,
    ]
    for text in texts:
        for form in forms:
            assert form not in text
        assert "secret payload" not in text


def _forms(raw: bytes) -> list[str]:
    return [
        raw.hex(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1],
    ]


def test_a_stack_with_signing_imports_none_of_it_until_it_sends(
    config_file: Path, tmp_path: Path
) -> None:
    probe = (
        "import sys\n"
        "from strongroom import Strongroom, load_config\n"
        f"stack = Strongroom(load_config({str(config_file)!r}, environ={{}}))\n"
        "stack.config.signing.key_id\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert not [name for name in loaded if name.startswith(("strongroom.signing", "pluggy"))]
    assert "strongroom._send" not in loaded


def test_a_nonce_cache_outage_is_a_signed_refusal_to_try_later(stack: Strongroom) -> None:
    server = Verifying(stack)

    class Down(MemoryNonceCache):
        def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
            raise NonceCacheUnavailableError("redis is down")

    server.verifier = RequestVerifier(server.ring, Down())
    serve(stack, server)
    with pytest.raises(RequestRefusedError, match="could not check the request's nonce") as refused:
        stack.send(SyncRequest("GET", "/v1/items"))
    assert (refused.value.status, refused.value.reason) == (503, "unavailable")
