"""The offline outbox against a signed sync server over pinned TLS (``tests/sync_server.py``).

Operations are queued in the ``notes`` files store, signed by
``Strongroom.send`` only when sent, and run on the server under the
middleware's idempotency records.  Clocks and randomness are injected.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from strongroom import Strongroom, load_config
from strongroom.errors import TransportError, UsageError
from strongroom.outbox import CHALLENGE, PREFIX, Outbox
from strongroom.signing.headers import IDEMPOTENCY_KEY
from strongroom.transport import SyncRequest, SyncResponse
from sync_server import ReferenceServer, SyncServer, device_config, make_device
from tls_servers import Pki, make_pki, serve_asgi

WORKER = Path(__file__).resolve().parents[1] / "outbox_worker.py"
MARKER = b"plaintext-marker-7d1e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Setup:
    stack: Strongroom
    server: SyncServer
    url: str
    root: Path


@pytest.fixture
def setup(tmp_path: Path, pki: Pki) -> Iterator[Setup]:
    server = SyncServer()
    with serve_asgi(server.app(), pki.server) as url:
        stack = make_device(tmp_path / "phone", url, pki, server, "phone-1")
        with stack:
            yield Setup(stack, server, url, tmp_path / "phone")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def op(name: str, body: bytes = b"note") -> SyncRequest:
    return SyncRequest("POST", f"/v1/accounts/alice/ops/{name}", body)


def outbox_of(setup: Setup, clock: Clock | None = None, **options: object) -> Outbox:
    return Outbox(
        setup.stack.store("notes"),
        account="alice",
        clock=clock or time.time,
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )


def test_an_operation_held_offline_is_signed_when_sent_and_runs_once_despite_a_lost_answer(
    setup: Setup,
) -> None:
    clock = Clock(time.time() - 3 * 3600)  # queued three hours ago: far outside the 300 s window
    outbox = outbox_of(setup, clock)
    op_id = outbox.enqueue(op("note"))
    queued = outbox.get(op_id)
    assert len(queued.idempotency_key) == 22  # 128 bits, base64url
    assert IDEMPOTENCY_KEY not in queued.headers  # nothing is signed at queue time
    clock.now = time.time()
    lost = 0

    def losing_the_first_answer(request: SyncRequest) -> SyncResponse:
        nonlocal lost
        response = setup.stack.send(request)  # signed now, inside the window
        if lost == 0:
            lost += 1
            raise TransportError("the connection dropped before the answer arrived")
        return response

    first = outbox.drain(losing_the_first_answer)
    assert first.offline
    assert [o.id for o in first.retrying] == [op_id]
    assert setup.server.runs["note"] == 1  # it ran; the device does not know
    retried = outbox.get(op_id)
    assert retried.attempts == 1
    assert clock.now <= retried.next_at <= clock.now + outbox.base_delay
    assert "TransportError" in (retried.error or "")
    clock.now = retried.next_at
    second = outbox.drain(losing_the_first_answer)
    [(sent, response)] = second.sent
    assert sent.id == op_id
    assert response.status == 201
    assert response.headers.get("idempotency-replayed") == "true"
    assert msgspec.msgpack.decode(response.body) == {"run": 1}
    assert setup.server.runs["note"] == 1  # exactly once
    assert outbox.operations() == []


def test_backoff_grows_with_full_jitter_within_bounds(setup: Setup) -> None:
    outbox = outbox_of(setup, base_delay=1.0, max_delay=60.0)
    for attempts in range(1, 12):
        cap = min(60.0, 2.0 ** (attempts - 1))
        delays = [outbox.delay(attempts) for _ in range(200)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > 0.8 * cap  # jitter spans the range up to the cap
        assert min(delays) < 0.2 * cap
    means = [sum(outbox.delay(n) for _ in range(400)) / 400 for n in (1, 3, 5)]
    assert means[0] < means[1] < means[2]
    # against the server: two 503s, each pushing the next attempt out, then success
    clock = Clock(time.time())
    outbox = outbox_of(setup, clock, base_delay=1.0, max_delay=60.0)
    op_id = outbox.enqueue(op("busy-2"))
    for attempts in (1, 2):
        report = outbox.drain(setup.stack.send)
        assert [o.id for o in report.retrying] == [op_id]
        queued = outbox.get(op_id)
        assert queued.attempts == attempts
        assert queued.error == "HTTP 503 (unavailable)"
        assert clock.now <= queued.next_at <= clock.now + 2.0 ** (attempts - 1)
        assert outbox.drain(setup.stack.send).waiting or queued.next_at == clock.now
        clock.now = queued.next_at
    assert [o.id for o, _ in outbox.drain(setup.stack.send).sent] == [op_id]
    assert setup.server.runs["busy-2"] == 3


def test_a_failing_operation_is_parked_with_its_error_and_the_others_still_go(
    setup: Setup,
) -> None:
    outbox = outbox_of(setup)
    failing = outbox.enqueue(op("fail", MARKER))
    others = [outbox.enqueue(op(name)) for name in ("one", "two")]
    report = outbox.drain(setup.stack.send)
    assert [o.id for o, _ in report.sent] == others
    [parked] = report.parked
    assert parked.id == failing
    assert parked.parked == "refused"
    assert parked.error == "HTTP 400 (refused)"  # status and code, no payload
    assert MARKER.decode() not in repr(parked)
    assert [o.id for o in outbox.parked()] == [failing]
    assert outbox.drain(setup.stack.send).sent == []  # parked: not sent again by itself
    assert setup.server.runs["fail"] == 1
    outbox.retry(failing)
    assert outbox.drain(setup.stack.send).parked[0].id == failing
    outbox.drop(failing)
    assert outbox.operations() == []
    # a retryable failure is parked after max_attempts
    clock = Clock(time.time())
    limited = outbox_of(setup, clock, max_attempts=2, base_delay=1.0)
    busy = limited.enqueue(op("busy-9"))
    limited.drain(setup.stack.send)
    clock.now += 10
    [gave_up] = limited.drain(setup.stack.send).parked
    assert (gave_up.id, gave_up.parked) == (busy, "attempts")
    assert gave_up.error == "2 attempts failed; last: HTTP 503 (unavailable)"


def test_a_stream_is_sent_in_order_and_a_parked_head_blocks_only_its_stream(
    setup: Setup,
) -> None:
    outbox = outbox_of(setup)
    head = outbox.enqueue(op("fail"), stream="a")
    behind = outbox.enqueue(op("a-2"), stream="a")
    for name in ("b-1", "b-2", "b-3"):
        outbox.enqueue(op(name), stream="b")
    outbox.enqueue(op("free"))
    report = outbox.drain(setup.stack.send)
    assert setup.server.order == ["fail", "b-1", "b-2", "b-3", "free"]
    assert report.blocked == [(behind, head)]
    assert [o.id for o in report.parked] == [head]
    again = outbox.drain(setup.stack.send)
    assert again.blocked == [(behind, head)]  # still waiting behind its parked head
    outbox.drop(head)
    outbox.drain(setup.stack.send)
    assert setup.server.order[-1] == "a-2"
    assert outbox.operations() == []


def test_a_fresh_auth_operation_fetches_a_challenge_bound_to_it(setup: Setup) -> None:
    outbox = outbox_of(setup)
    op_id = outbox.enqueue(op("payment"), fresh_auth=True)
    [(sent, response)] = outbox.drain(setup.stack.send).sent
    assert (sent.id, response.status) == (op_id, 201)
    assert setup.server.runs["payment"] == 1
    assert setup.server.challenges == {}  # the token was used up
    # with a token never issued, or one issued for another operation, the server refuses: 428
    send = setup.stack.send
    required = {IDEMPOTENCY_KEY: "op-a"}
    forged = {**required, CHALLENGE: "never-issued"}
    assert send(SyncRequest("POST", "/v1/accounts/alice/ops/payment", b"x", forged)).status == 428
    challenge = send(
        SyncRequest(
            "POST", "/v1/accounts/alice/challenges", msgspec.msgpack.encode({"operation": "op-b"})
        )
    )
    token = msgspec.msgpack.decode(challenge.body)["token"]
    other = {**required, CHALLENGE: token}
    assert send(SyncRequest("POST", "/v1/accounts/alice/ops/payment", b"x", other)).status == 428
    assert setup.server.runs["payment"] == 1


def test_an_operation_first_sent_past_the_retention_is_flagged_not_sent_again(
    setup: Setup,
) -> None:
    clock = Clock(time.time() - 4 * 86400)
    outbox = outbox_of(setup, clock)
    tried = outbox.enqueue(op("tried"))
    waited = outbox.enqueue(op("waited"))  # queued four days ago, never sent: nothing ran
    clock.now = time.time() - 25 * 3600  # tried 25 h ago: it ran, the answer was lost

    def lost(request: SyncRequest) -> SyncResponse:
        setup.stack.send(request)
        raise TransportError("the answer was lost")

    assert outbox.drain(lost).offline  # the drain stops there: "waited" is not tried
    assert outbox.get(tried).first_attempt == clock.now
    assert outbox.get(waited).first_attempt is None
    clock.now = time.time()
    report = outbox.drain(setup.stack.send)
    assert [o.id for o, _ in report.sent] == [waited]
    [stale] = report.parked
    assert (stale.id, stale.parked) == (tried, "stale")
    assert "idempotency retention" in (stale.error or "")
    assert setup.server.runs["tried"] == 1
    outbox.retry(tried, send_stale=True)  # the caller accepts the risk
    assert [o.id for o, _ in outbox.drain(setup.stack.send).sent] == [tried]
    assert setup.server.runs == {"waited": 1, "tried": 1}  # this server still had its record


def test_the_outbox_on_disk_holds_no_plaintext(setup: Setup) -> None:
    outbox = outbox_of(setup)
    outbox.enqueue(op("fail", MARKER), stream=MARKER.decode())
    outbox.enqueue(SyncRequest("POST", f"/v1/accounts/alice/ops/{MARKER.decode()}", MARKER))
    outbox.drain(setup.stack.send)  # one parked with its error, one sent
    assert outbox.operations()  # something is on disk
    files = [path for path in setup.root.rglob("*") if path.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert MARKER not in data, path
        assert PREFIX.encode() not in data, path


def test_the_outbox_refuses_a_request_that_brings_its_own_idempotency_key(setup: Setup) -> None:
    with pytest.raises(UsageError, match="Idempotency-Key"):
        outbox_of(setup).enqueue(SyncRequest("POST", "/v1/x", b"", {IDEMPOTENCY_KEY: "mine"}))


def _worker(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(config), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=WORKER.parent,
    )


def test_a_process_killed_while_queueing_or_sending_loses_and_duplicates_nothing(
    tmp_path: Path, pki: Pki
) -> None:
    server = SyncServer()
    with serve_asgi(server.app(), pki.server) as url:
        make_device(tmp_path / "phone", url, pki, server, "phone-1").close()
        config = device_config(tmp_path / "phone", url, pki, "phone-1")
        queued = _worker(config, "enqueue", "k-1", "k-2", "k-3", "k-4")
        assert queued.returncode == -9, queued.stderr  # SIGKILL inside the fourth write
        acknowledged = queued.stdout.split()
        assert len(acknowledged) == 3
        drained = _worker(config, "drain", "2")
        assert drained.returncode == -9, drained.stderr  # killed after the 2nd answer
        assert server.runs == {"k-1": 1, "k-2": 1}
        finished = _worker(config, "drain", "0")
        assert finished.returncode == 0, finished.stderr
        with Strongroom(load_config(config, environ={})) as stack:
            stack.keys.unlock()
            assert Outbox(stack.store("notes"), account="alice").operations() == []
    # each acknowledged operation ran exactly once; the one killed mid-write ran once or never
    assert {name: server.runs[name] for name in ("k-1", "k-2", "k-3")} == dict.fromkeys(
        ("k-1", "k-2", "k-3"), 1
    )
    assert server.runs["k-4"] in {0, 1}
    assert sum(server.runs.values()) == len(server.order)


def test_fresh_auth_and_a_lost_answer_against_the_reference_server(
    tmp_path: Path, pki: Pki
) -> None:
    server = ReferenceServer(tmp_path / "server.db")
    with serve_asgi(server.app(), pki.server) as url:
        with make_device(tmp_path / "phone", url, pki, server, "phone-1") as stack:
            outbox = Outbox(stack.store("notes"), account="alice", rng=random.Random(3))
            body = msgspec.msgpack.encode({"changes": [{"key": "k", "value": b"x", "base_seq": 0}]})
            push = SyncRequest("POST", "/v1/accounts/alice/push", body)
            unchallenged = stack.send(
                SyncRequest("POST", push.path, body, {CHALLENGE: "v1.1.x.y", IDEMPOTENCY_KEY: "a"})
            )
            assert unchallenged.status == 428
            op_id = outbox.enqueue(push, fresh_auth=True)
            answers = 0

            def losing_the_first_answer(request: SyncRequest) -> SyncResponse:
                nonlocal answers
                response = stack.send(request)
                answers += 1
                if answers == 2:  # the challenge, then the push: its answer is lost
                    raise TransportError("the connection dropped")
                return response

            assert outbox.drain(losing_the_first_answer).offline
            outbox.retry(op_id)  # due now
            [(_, response)] = outbox.drain(losing_the_first_answer).sent
            assert msgspec.msgpack.decode(response.body)["results"] == [
                {"key": "k", "seq": 1, "conflict": False}
            ]
        assert server.runs["push"] == 3  # refused, run, answered from the idempotency record
        assert server.storage.pull("alice").cursor == 1  # applied once
    server.storage.close()
