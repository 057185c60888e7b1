"""The server's request verifier: every refusal, in order, and failing closed on the cache."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from strongroom.errors import (
    IdempotencyUnavailableError,
    IntegrityError,
    NonceCacheUnavailableError,
    RequestVerificationError,
    UsageError,
)
from strongroom.idempotency import Begun, Claim, State
from strongroom.nonce_cache import NonceCache
from strongroom.signing import headers as h
from strongroom.signing.signer import check_response, sign_request
from strongroom.signing.verifier import KeyRing, RequestVerifier, VerifiedRequest
from strongroom.transport import SyncResponse
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache, MemoryNonceCacheSettings

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEY_ID = "phone-1.v1"
NOW = 1_700_000_000.0
TARGET = "/v1/sync?since=5&limit=10"
BODY = b'{"op":"put","id":"r1"}'


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingCache(NonceCache):
    """Counts what reaches the cache; can be made to fail."""

    inner: MemoryNonceCache = field(default_factory=MemoryNonceCache)
    calls: list[tuple[str, str, float]] = field(default_factory=list)
    failing: bool = False

    def __post_init__(self) -> None:
        super().__init__()

    def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        self.calls.append((key_id, nonce, expires_at))
        if self.failing:
            raise NonceCacheUnavailableError("redis is unreachable")
        return self.inner.add(key_id, nonce, expires_at)


def signed(
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    key: bytes = KEY,
    key_id: str = KEY_ID,
    at: float = NOW,
    idempotency_key: str = "",
) -> dict[str, str]:
    headers = sign_request(
        key, key_id, method, target, body, idempotency_key=idempotency_key, now=at
    )
    if idempotency_key:
        headers[h.IDEMPOTENCY_KEY] = idempotency_key
    return headers


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> RecordingCache:
    return RecordingCache(MemoryNonceCache(clock=clock))


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({KEY_ID: KEY})


@pytest.fixture
def verifier(ring: KeyRing, cache: RecordingCache, clock: Clock) -> RequestVerifier:
    return RequestVerifier(ring, cache, clock=clock)


def refusal(
    verifier: RequestVerifier,
    headers: dict[str, str],
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
) -> RequestVerificationError:
    with pytest.raises(RequestVerificationError) as refused:
        verifier.verify(method, target, headers, body)
    return refused.value


def test_a_signed_request_is_verified(verifier: RequestVerifier) -> None:
    headers = signed(idempotency_key="op-7f3a")
    verified = verifier.verify("POST", TARGET, headers, BODY)
    assert verified == VerifiedRequest(KEY_ID, headers[h.NONCE], int(NOW), "op-7f3a")


def test_header_names_are_case_insensitive_and_pairs_are_accepted(
    verifier: RequestVerifier,
) -> None:
    headers = signed()
    pairs = [(name.lower(), value) for name, value in headers.items()] + [("accept", "*/*")]
    assert verifier.verify("POST", TARGET, pairs, BODY).key_id == KEY_ID


def test_a_replayed_request_is_refused(verifier: RequestVerifier) -> None:
    headers = signed()
    verifier.verify("POST", TARGET, headers, BODY)
    refused = refusal(verifier, headers)
    assert (refused.status, refused.reason) == (401, "replay")


@pytest.mark.parametrize("skew", [-301.0, 301.0, -86_400.0, 86_400.0])
def test_a_request_outside_the_window_is_refused_either_side(
    verifier: RequestVerifier, cache: RecordingCache, skew: float
) -> None:
    refused = refusal(verifier, signed(at=NOW + skew))
    assert (refused.status, refused.reason, refused.server_time) == (401, "timestamp", int(NOW))
    assert cache.calls == []  # a stale request records no nonce


@pytest.mark.parametrize("skew", [-300.0, 300.0])
def test_the_window_edges_are_accepted(verifier: RequestVerifier, skew: float) -> None:
    verifier.verify("POST", TARGET, signed(at=NOW + skew), BODY)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("body", {"body": BODY + b" "}),
        ("body emptied", {"body": b""}),
        ("query value", {"target": "/v1/sync?since=6&limit=10"}),
        ("query parameter added", {"target": TARGET + "&all=1"}),
        ("query dropped", {"target": "/v1/sync"}),
        ("path", {"target": "/v1/sync2?since=5&limit=10"}),
        ("method", {"method": "PUT"}),
    ],
)
def test_a_request_changed_after_signing_is_refused(
    verifier: RequestVerifier, cache: RecordingCache, what: str, change: dict[str, object]
) -> None:
    headers = signed()
    refused = refusal(verifier, headers, **change)  # type: ignore[arg-type]
    assert (refused.status, refused.reason) == (401, "signature"), what
    assert cache.calls == []


def test_a_repeated_parameter_reordered_is_a_changed_query(verifier: RequestVerifier) -> None:
    headers = signed(target="/v1/items?tag=a&tag=b")
    refused = refusal(verifier, headers, target="/v1/items?tag=b&tag=a")
    assert refused.reason == "signature"
    # parameters of different names may be reordered: the canonical query sorts them
    verifier.verify("POST", "/v1/sync?limit=10&since=5", signed(), BODY)


def test_a_changed_idempotency_key_is_refused(verifier: RequestVerifier) -> None:
    headers = signed(idempotency_key="op-1")
    headers[h.IDEMPOTENCY_KEY] = "op-2"
    assert refusal(verifier, headers).reason == "signature"
    del headers[h.IDEMPOTENCY_KEY]
    assert refusal(verifier, headers).reason == "signature"


def test_an_unknown_key_id_is_refused(verifier: RequestVerifier, cache: RecordingCache) -> None:
    refused = refusal(verifier, signed(key_id="laptop.v1"))
    assert (refused.status, refused.reason) == (401, "signature")
    assert cache.calls == []


def test_a_retired_key_id_is_refused_and_cannot_come_back(
    verifier: RequestVerifier, ring: KeyRing
) -> None:
    ring.add("phone-1.v2", OTHER_KEY)
    ring.retire(KEY_ID)
    refused = refusal(verifier, signed())
    assert (refused.status, refused.reason) == (401, "signature")
    verifier.verify("POST", TARGET, signed(key=OTHER_KEY, key_id="phone-1.v2"), BODY)
    with pytest.raises(UsageError):
        ring.add(KEY_ID, KEY)
    assert KEY.hex() not in repr(ring)
    assert "phone-1.v2" in repr(ring)


def test_another_devices_key_does_not_verify(verifier: RequestVerifier, ring: KeyRing) -> None:
    ring.add("laptop.v1", OTHER_KEY)
    refused = refusal(verifier, signed(key=OTHER_KEY, key_id=KEY_ID))
    assert refused.reason == "signature"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (h.KEY_ID, None),
        (h.TIMESTAMP, None),
        (h.NONCE, None),
        (h.SIGNATURE, None),
        (h.KEY_ID, "phone 1"),
        (h.KEY_ID, "x" * 65),
        (h.TIMESTAMP, "01700000000"),
        (h.TIMESTAMP, "+1700000000"),
        (h.TIMESTAMP, "1700000000.5"),
        (h.TIMESTAMP, "9" * 13),
        (h.NONCE, "AAECAwQFBgcICQoLDA0ODx"),  # non-zero padding bits
        (h.NONCE, "AAECAwQFBgcICQoLDA0ODw=="),
        (h.NONCE, "AAECAwQFBgcICQoLDA0O"),
        (h.SIGNATURE, "A" * 42),
        (h.SIGNATURE, "A" * 42 + "B"),
        (h.SIGNATURE, "+" * 43),
        (h.IDEMPOTENCY_KEY, "has space"),
        (h.IDEMPOTENCY_KEY, "\u00e9t\u00e9"),
    ],
)
def test_malformed_headers_are_refused_before_any_key_is_used(
    verifier: RequestVerifier, cache: RecordingCache, name: str, value: str | None
) -> None:
    headers = signed()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    refused = refusal(verifier, headers)
    assert (refused.status, refused.reason) == (400, "malformed")
    assert cache.calls == []


def test_a_repeated_signing_header_is_malformed(verifier: RequestVerifier) -> None:
    headers = [*signed().items(), (h.NONCE.lower(), "AAECAwQFBgcICQoLDA0ODw")]
    with pytest.raises(RequestVerificationError) as refused:
        verifier.verify("POST", TARGET, headers, BODY)
    assert refused.value.status == 400


def test_a_forged_request_burns_no_nonce(verifier: RequestVerifier, cache: RecordingCache) -> None:
    """The MAC is checked before the nonce is recorded: a forgery cannot pre-empt the real one."""
    genuine = signed()
    forged = {**genuine, h.SIGNATURE: signed(key=OTHER_KEY)[h.SIGNATURE]}
    forged[h.NONCE] = genuine[h.NONCE]
    assert refusal(verifier, forged).reason == "signature"
    assert cache.calls == []
    verifier.verify("POST", TARGET, genuine, BODY)
    assert [call[1] for call in cache.calls] == [genuine[h.NONCE]]


def test_the_nonce_is_kept_while_its_timestamp_can_be_accepted(
    verifier: RequestVerifier, cache: RecordingCache, clock: Clock
) -> None:
    headers = signed(at=NOW - 250)
    verifier.verify("POST", TARGET, headers, BODY)
    assert cache.calls[0][2] == NOW - 250 + 300 + 1
    clock.now = NOW - 250 + 300  # the last second the timestamp is in the window
    assert refusal(verifier, headers).reason == "replay"
    clock.now += 1  # out of the window: refused for its timestamp, whatever the cache says
    assert refusal(verifier, headers).reason == "timestamp"


def test_a_full_cache_refuses_with_503(clock: Clock, ring: KeyRing) -> None:
    cache = MemoryNonceCache(MemoryNonceCacheSettings(max_entries=2), clock=clock)
    verifier = RequestVerifier(ring, cache, clock=clock)
    for _ in range(2):
        verifier.verify("POST", TARGET, signed(), BODY)
    refused = refusal(verifier, signed())
    assert (refused.status, refused.reason) == (503, "unavailable")
    assert isinstance(refused.__cause__, NonceCacheUnavailableError)


def test_a_failing_cache_refuses_with_503(verifier: RequestVerifier, cache: RecordingCache) -> None:
    cache.failing = True
    refused = refusal(verifier, signed())
    assert (refused.status, refused.reason, refused.server_time) == (503, "unavailable", int(NOW))


def test_a_cache_that_raises_anything_else_is_not_an_acceptance(
    ring: KeyRing, clock: Clock
) -> None:
    class Broken(NonceCache):
        def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
            raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        RequestVerifier(ring, Broken(), clock=clock).verify("POST", TARGET, signed(), BODY)


def test_concurrent_duplicates_exactly_one_wins(verifier: RequestVerifier) -> None:
    headers = signed()
    threads = 16
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    guard = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            verifier.verify("POST", TARGET, headers, BODY)
            outcome = "accepted"
        except RequestVerificationError as exc:
            outcome = exc.reason
        with guard:
            outcomes.append(outcome)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(outcomes) == ["accepted"] + ["replay"] * (threads - 1)


def test_concurrent_duplicates_with_the_add_step_interleaved(ring: KeyRing, clock: Clock) -> None:
    """Both threads pass the MAC and window checks before either records: one still wins."""
    inner = MemoryNonceCache(clock=clock)
    both_checked = threading.Barrier(2)

    class Interleaved(NonceCache):
        def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
            both_checked.wait(timeout=10)
            return inner.add(key_id, nonce, expires_at)

    verifier = RequestVerifier(ring, Interleaved(), clock=clock)
    headers = signed()
    results: list[object] = []
    run: Callable[[], None] = lambda: results.append(_outcome(verifier, headers))  # noqa: E731
    workers = [threading.Thread(target=run) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(map(str, results)) == ["accepted", "replay"]


def _outcome(verifier: RequestVerifier, headers: dict[str, str]) -> str:
    try:
        verifier.verify("POST", TARGET, headers, BODY)
    except RequestVerificationError as exc:
        return exc.reason
    return "accepted"


def test_responses_are_signed_over_status_body_and_the_request_nonce(
    verifier: RequestVerifier, clock: Clock
) -> None:
    headers = signed()
    verified = verifier.verify("POST", TARGET, headers, BODY)
    clock.now += 2
    answer = verifier.sign_response(verified, 200, b"ok")
    assert answer[h.SERVER_TIME] == str(int(NOW) + 2)
    response = SyncResponse(200, b"ok", answer)
    assert check_response(KEY, KEY_ID, headers[h.NONCE], response) == int(NOW) + 2
    for altered in (SyncResponse(201, b"ok", answer), SyncResponse(200, b"ok!", answer)):
        with pytest.raises(IntegrityError):
            check_response(KEY, KEY_ID, headers[h.NONCE], altered)
    other_nonce = signed()[h.NONCE]
    with pytest.raises(IntegrityError):
        check_response(KEY, KEY_ID, other_nonce, response)


def test_refusals_of_authentic_requests_are_signed_and_others_are_not(
    verifier: RequestVerifier, cache: RecordingCache
) -> None:
    stale = signed(at=NOW - 1000)
    status, answer, body = verifier.rejection(refusal(verifier, stale))
    assert status == 401
    assert answer[h.REJECTED] == "timestamp"
    assert answer[h.SERVER_TIME] == str(int(NOW))
    response = SyncResponse(status, body, answer)
    assert check_response(KEY, KEY_ID, stale[h.NONCE], response) == int(NOW)
    assert b'"error":"timestamp"' in body

    cache.failing = True
    status, answer, body = verifier.rejection(refusal(verifier, signed()))
    assert (status, answer[h.REJECTED]) == (503, "unavailable")
    assert h.RESPONSE_SIGNATURE in answer
    cache.failing = False

    forged = {**signed(), h.SIGNATURE: "A" * 43}
    status, answer, body = verifier.rejection(refusal(verifier, forged))
    assert status == 401
    assert h.RESPONSE_SIGNATURE not in answer
    assert answer[h.SERVER_TIME] == str(int(NOW))
    assert body == b'{"error":"signature","server_time":1700000000}'


def test_the_verifier_never_shows_a_key(verifier: RequestVerifier) -> None:
    text = repr(verifier) + repr(KeyRing({KEY_ID: KEY}))
    for form in (KEY.hex(), repr(KEY), h.b64(KEY)):
        assert form not in text
    refused = refusal(verifier, signed(key=os.urandom(32)))
    assert KEY.hex() not in str(refused)


def test_keys_and_windows_are_checked(ring: KeyRing) -> None:
    with pytest.raises(UsageError):
        ring.add("short.v1", b"x" * 16)
    with pytest.raises(UsageError):
        ring.add("bad id", KEY)
    with pytest.raises(UsageError):
        RequestVerifier(ring, MemoryNonceCache(), window=0)


# authenticate, then admit on the event loop ---------------------------------------------


def test_authenticate_checks_everything_but_records_no_nonce(clock: Clock, ring: KeyRing) -> None:
    cache = MemoryNonceCache(clock=clock)
    verifier = RequestVerifier(ring, cache, clock=clock)
    headers = signed()
    first = verifier.authenticate("POST", TARGET, headers, BODY)
    assert verifier.authenticate("POST", TARGET, headers, BODY) == first
    assert len(cache) == 0
    with pytest.raises(RequestVerificationError) as forged:
        verifier.authenticate("POST", TARGET, signed(key=OTHER_KEY), BODY)
    assert forged.value.reason == "signature"
    assert len(cache) == 0  # a forged request burns no nonce


def test_admit_records_the_nonce_once_and_signs_the_replay_refusal(
    clock: Clock, ring: KeyRing
) -> None:
    verifier = RequestVerifier(ring, MemoryNonceCache(clock=clock), clock=clock)
    headers = signed()
    verified = verifier.authenticate("POST", TARGET, headers, BODY)
    assert asyncio.run(verifier.admit(verified)).state is State.NEW
    with pytest.raises(RequestVerificationError) as replayed:
        asyncio.run(verifier.admit(verified))
    assert (replayed.value.status, replayed.value.reason) == (401, "replay")
    status, answer, body = verifier.rejection(replayed.value)
    assert check_response(KEY, KEY_ID, verified.nonce, SyncResponse(status, body, answer)) == int(
        NOW
    )
    assert refusal(verifier, headers).reason == "replay"  # verify() sees the same cache


def test_admit_claims_the_idempotency_key_with_the_nonce(clock: Clock, ring: KeyRing) -> None:
    cache = MemoryNonceCache(clock=clock)
    verifier = RequestVerifier(ring, cache, clock=clock)
    verified = verifier.authenticate("POST", TARGET, signed(idempotency_key="op-1"), BODY)
    claim = Claim(KEY_ID, "op-1", "f" * 64)
    assert asyncio.run(verifier.admit(verified, claim)).state is State.NEW
    assert cache.begin(KEY_ID, "op-1", "f" * 64).state is State.IN_FLIGHT


def test_admit_on_an_unavailable_cache_refuses_with_a_signed_503(
    clock: Clock, ring: KeyRing
) -> None:
    class Full(MemoryNonceCache):
        async def admit(self, *args: object, **kwargs: object) -> Begun | None:
            raise IdempotencyUnavailableError("the store is full")

    verifier = RequestVerifier(ring, Full(clock=clock), clock=clock)
    verified = verifier.authenticate("POST", TARGET, signed(), BODY)
    with pytest.raises(RequestVerificationError) as refused:
        asyncio.run(verifier.admit(verified, Claim(KEY_ID, "op-1", "f" * 64)))
    assert (refused.value.status, refused.value.reason) == (503, "unavailable")
    status, answer, body = verifier.rejection(refused.value)
    assert check_response(KEY, KEY_ID, verified.nonce, SyncResponse(status, body, answer)) == int(
        NOW
    )


def test_admit_needs_an_awaitable_cache(verifier: RequestVerifier) -> None:
    verified = verifier.authenticate("POST", TARGET, signed(), BODY)
    with pytest.raises(UsageError, match="use verify"):
        asyncio.run(verifier.admit(verified))
