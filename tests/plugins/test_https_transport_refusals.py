"""Servers the ``https`` transport refuses, each with a one-line reason and no request byte sent.

Every server here is a real TLS server on loopback (``tests/tls_servers.py``)
that records each application byte it receives after the handshake.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from https_support import GET, https, ok, pins, resolve_transport, tls_range

from strongroom.errors import ConfigError, PinMismatchError, TransportError
from tls_servers import Pki, http_response, make_pki, self_signed, serve_recording

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mitm(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second CA, as an interception proxy or a mis-issuing CA would hold."""
    return make_pki(tmp_path_factory.mktemp("mitm"), organization="Interceptor")


def both_roots(pki: Pki, mitm: Pki, directory: Path) -> str:
    bundle = directory / "both-roots.pem"
    bundle.write_bytes(pki.ca_bundle.read_bytes() + mitm.ca_bundle.read_bytes())
    return str(bundle)


def test_a_trusted_but_unpinned_ca_is_refused_before_sending(
    pki: Pki, mitm: Pki, tmp_path: Path
) -> None:
    table = pins("127.0.0.1", pki.leaf_pin, pki.root_pin)
    bundle = both_roots(pki, mitm, tmp_path)
    with (
        serve_recording(mitm.server, respond=ok) as server,
        https(server.url, None, ca_bundle=bundle, pins=table) as transport,
        pytest.raises(PinMismatchError) as caught,
    ):
        transport.send(GET)
    message = str(caught.value)
    assert message.startswith("127.0.0.1: pin mismatch")
    assert mitm.leaf_pin in message
    assert mitm.root_pin in message
    assert "\n" not in message
    assert server.handshakes == 1
    assert server.application_bytes == 0


def test_a_self_signed_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    with (
        serve_recording(self_signed(tmp_path), respond=ok) as server,
        https(server.url, pki) as transport,
        pytest.raises(TransportError, match=r"certificate not verified: .*self"),
    ):
        transport.send(GET)
    assert server.application_bytes == 0


def test_an_expired_certificate_is_refused(pki: Pki) -> None:
    expired = pki.issue(
        "expired",
        not_before=NOW - datetime.timedelta(days=30),
        not_after=NOW - datetime.timedelta(days=1),
    )
    with (
        serve_recording(expired, respond=ok) as server,
        https(server.url, pki) as transport,
        pytest.raises(TransportError, match=r"certificate not verified: .*expired"),
    ):
        transport.send(GET)
    assert server.application_bytes == 0


def test_a_certificate_for_another_host_is_refused(pki: Pki) -> None:
    wrong = pki.issue("wrong-name", "other.example")
    with (
        serve_recording(wrong, respond=ok) as server,
        https(server.url, pki) as transport,
        pytest.raises(TransportError) as caught,
    ):
        transport.send(GET)
    assert "certificate not verified" in str(caught.value)
    assert "mismatch" in str(caught.value).lower()
    assert server.application_bytes == 0


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_a_server_offering_only_old_tls_is_refused(pki: Pki, version: ssl.TLSVersion) -> None:
    with (
        serve_recording(pki.server, respond=ok, configure=tls_range(version, version)) as server,
        https(server.url, pki) as transport,
        pytest.raises(TransportError, match="TLS version refused"),
    ):
        transport.send(GET)
    assert server.application_bytes == 0


def test_the_old_tls_server_really_serves_old_tls(pki: Pki) -> None:
    """The test above refuses a server that works, not one that cannot handshake at all."""
    import socket
    import warnings

    low = tls_range(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
    with serve_recording(pki.server, configure=low) as server:
        client = ssl.create_default_context(cafile=str(pki.ca_bundle))
        low(client)
        port = int(server.url.rsplit(":", 1)[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                assert tls.version() == "TLSv1.1"


def test_tls_13_only_refuses_a_tls_12_server(pki: Pki) -> None:
    only_12 = tls_range(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    with serve_recording(pki.server, respond=ok, configure=only_12) as server:
        with (
            https(server.url, pki, min_tls="1.3") as transport,
            pytest.raises(TransportError, match=r"TLS version refused.*TLS 1\.3"),
        ):
            transport.send(GET)
        assert server.application_bytes == 0
        with https(server.url, pki) as transport:  # the default, 1.2, talks to it
            assert transport.send(GET).status == 200


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080", "only https://"),
        ("ftp://sync.example.com", "only https://"),
        ("https://sync.example.com/api", "origin only"),
        ("https://sync.example.com/?x=1", "origin only"),
        ("https://sync.example.com/#top", "origin only"),
        ("https://user:pw@sync.example.com", "credentials"),
    ],
)
def test_a_url_that_is_not_an_https_origin_is_a_config_error(
    tmp_path: Path, url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_transport(tmp_path, {"url": url})
    message = str(caught.value)
    assert "[transport] key 'url'" in message
    assert reason in message
    assert "pw" not in message


def test_a_redirect_to_another_host_is_not_followed(pki: Pki) -> None:
    with serve_recording(pki.server, respond=ok) as elsewhere:
        target = elsewhere.url.replace("127.0.0.1", "localhost") + "/steal?token=s3cret"
        redirect = http_response(302, b"moved", [("Location", target)])
        with (
            serve_recording(pki.server, respond=lambda request: redirect) as server,
            https(server.url, pki) as transport,
            pytest.raises(TransportError) as caught,
        ):
            transport.send(GET)
    message = str(caught.value)
    assert "302" in message
    assert "never followed" in message
    assert elsewhere.url.replace("127.0.0.1", "localhost") + "/steal" in message
    assert "s3cret" not in message
    assert elsewhere.accepted == 0
    assert len(server.requests) == 1


def test_an_expired_pin_set_fails_closed_before_sending(pki: Pki) -> None:
    yesterday = (NOW - datetime.timedelta(days=1)).date()
    table = pins("127.0.0.1", pki.leaf_pin, pki.root_pin, expires=yesterday)
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=table) as transport,
        pytest.raises(PinMismatchError) as caught,
    ):
        transport.send(GET)
    expected = f"127.0.0.1: the pins for 127.0.0.1 expired on {yesterday.isoformat()}"
    assert expected in str(caught.value)
    assert server.application_bytes == 0


def test_a_pinned_certificate_sent_but_not_in_the_verified_chain_does_not_pass(
    pki: Pki, mitm: Pki, tmp_path: Path
) -> None:
    """OkHttp CVE-2016-2402: the pinned real chain appended to a trusted interceptor's."""
    decoy = mitm.issue(
        "decoy",
        extra_pems=[pki.intermediate.cert_pem.bytes(), pki.root.cert_pem.bytes()],
    )
    table = pins("127.0.0.1", pki.intermediate_pin, pki.root_pin)
    bundle = both_roots(pki, mitm, tmp_path)
    with (
        serve_recording(decoy, respond=ok) as server,
        https(server.url, None, ca_bundle=bundle, pins=table) as transport,
        pytest.raises(PinMismatchError) as caught,
    ):
        transport.send(GET)
    presented = str(caught.value).split("presented", 1)[1]
    assert pki.intermediate_pin not in presented
    assert pki.root_pin not in presented
    assert server.application_bytes == 0


def test_no_retry_after_a_pin_failure(pki: Pki, mitm: Pki, tmp_path: Path) -> None:
    table = pins("127.0.0.1", pki.leaf_pin, pki.root_pin)
    bundle = both_roots(pki, mitm, tmp_path)
    with (
        serve_recording(mitm.server, respond=ok) as server,
        https(server.url, None, ca_bundle=bundle, pins=table, retries=5) as transport,
        pytest.raises(PinMismatchError),
    ):
        transport.send(GET)
    assert server.accepted == 1


def test_no_retry_after_a_certificate_failure(pki: Pki, tmp_path: Path) -> None:
    with (
        serve_recording(self_signed(tmp_path), respond=ok) as server,
        https(server.url, pki, retries=5) as transport,
        pytest.raises(TransportError),
    ):
        transport.send(GET)
    assert server.accepted == 1


def test_there_is_no_switch_that_accepts_any_certificate() -> None:
    from strongroom_plugins.transports._https_settings import HttpsSettings

    names = set(HttpsSettings.__struct_fields__)
    assert not {name for name in names if "verify" in name or "insecure" in name}
