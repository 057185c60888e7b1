"""``strongroom.idempotency``: the request fingerprint and which outcomes are kept."""

from __future__ import annotations

from strongroom.idempotency import NOT_STORED, fingerprint, is_stored


def test_the_fingerprint_follows_the_canonical_request() -> None:
    base = fingerprint("POST", "/v1/notes?b=2&a=1", b"body")
    assert fingerprint("post", "/v1/%6Eotes?a=1&b=2", b"body") == base  # one request, two spellings
    assert len(base) == 64
    for other in (
        fingerprint("PUT", "/v1/notes?b=2&a=1", b"body"),
        fingerprint("POST", "/v1/notes?b=3&a=1", b"body"),
        fingerprint("POST", "/v1/notes?b=2&a=1", b"bodY"),
        fingerprint("POST", "/v1/notes%2F?b=2&a=1", b"body"),
        fingerprint("POST", "/v1/notes?b=2+&a=1", b"body"),
    ):
        assert other != base


def test_only_outcomes_a_retry_would_repeat_are_stored() -> None:
    assert [status for status in (200, 201, 204, 302, 400, 404, 422) if not is_stored(status)] == []
    assert [
        status for status in (401, 408, 409, 425, 429, 500, 502, 503) if is_stored(status)
    ] == []
    assert frozenset({401, 408, 409, 425, 429}) == NOT_STORED
