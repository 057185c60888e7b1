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

from strongroom import Strongroom, load_config
from strongroom.errors import RequestVerificationError, TransportError
from strongroom.keys.purposes import SIGNING
from strongroom.signing import headers as h
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from tls_servers import Recording, http_response, make_pki, serve_recording

PASSPHRASE = "lost response passphrase 19c4"  # noqa: S105 - a test's own


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
    with serve_recording(pki.server, respond=server.respond) as recording:
        config = tmp_path / "strongroom.toml"
        config.write_text(
            f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\naccount = "alice"\n'
            '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
            f'[transport]\nuse = "https"\nurl = "{recording.url}"\n'
            f'ca_bundle = "{pki.ca_bundle}"\nretries = 2\n'
            '[signing]\nkey_id = "phone-1"\n'
        )
        with Strongroom(load_config(config, environ={}), secrets={"main": PASSPHRASE}) as stack:
            stack.initialise()
            data_key = stack.keys.data_key(SIGNING)
            ring.add("phone-1.v1", derive_mac_key(data_key.material.view(), "alice", 1))
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
