"""An answer lost in transit: the transport's retry is a replay; a new signature gets the answer.

The server verifies, handles the request, then drops the connection before
answering.  The https transport retries an idempotent request with the same
signed bytes; the verifier refuses them as a replay, in a signed refusal;
``Strongroom.send`` signs the request afresh and sends it once more.  A POST
without an ``Idempotency-Key`` is never repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signing_device import provision, signing_device
from strongroom import Strongroom
from strongroom.errors import RequestVerificationError, TransportError
from strongroom.signing import headers as h
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from tls_servers import Recording, http_response, make_pki, serve_recording


class LosingServer:
    """The verifier, then a handler that runs; the first answer is dropped."""

    def __init__(self, verifier: RequestVerifier) -> None:
        self.verifier = verifier
        self.handled = 0
        self.refusals: list[str] = []

    def respond(self, raw: bytes) -> bytes | None:
        head, _, body = raw.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        headers = [tuple(line.split(": ", 1)) for line in header_lines]
        try:
            verified = self.verifier.verify(method, target, headers, body)  # type: ignore[arg-type]
        except RequestVerificationError as refused:
            self.refusals.append(refused.reason)
            status, answer_headers, answer = self.verifier.rejection(refused)
            return http_response(status, answer, list(answer_headers.items()))
        self.handled += 1
        if self.handled == 1:
            return None  # handled, and the answer lost with the connection
        answer = b"done"
        return http_response(
            200, answer, list(self.verifier.sign_response(verified, 200, answer).items())
        )


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[Strongroom, LosingServer, Recording]]:
    pki = make_pki(tmp_path / "pki")
    ring = KeyRing()
    server = LosingServer(RequestVerifier(ring, MemoryNonceCache()))
    with (
        serve_recording(pki.server, respond=server.respond) as recording,
        signing_device(tmp_path, recording.url, pki.ca_bundle, transport="retries = 2\n") as stack,
    ):
        provision(stack, ring)
        yield stack, server, recording


def test_an_idempotent_request_whose_answer_was_lost_is_signed_again(
    device: tuple[Strongroom, LosingServer, Recording],
) -> None:
    stack, server, _ = device
    response = stack.send(SyncRequest("PUT", "/v1/notes/a", b"v1"))
    assert (response.status, response.body) == (200, b"done")
    assert server.refusals == ["replay"]  # the transport's retry, same bytes
    assert server.handled == 2  # a PUT: running it twice is harmless


def test_a_post_with_an_idempotency_key_is_signed_again(
    device: tuple[Strongroom, LosingServer, Recording],
) -> None:
    stack, server, _ = device
    request = SyncRequest("POST", "/v1/notes", b"v1", {h.IDEMPOTENCY_KEY: "op-7"})
    assert stack.send(request).status == 200
    assert server.refusals == ["replay"]


def test_a_post_without_an_idempotency_key_is_never_repeated(
    device: tuple[Strongroom, LosingServer, Recording],
) -> None:
    stack, server, recording = device
    with pytest.raises(TransportError, match="closed the connection"):
        stack.send(SyncRequest("POST", "/v1/notes", b"v1"))
    assert server.handled == 1
    assert server.refusals == []
    assert len(recording.requests) == 1
