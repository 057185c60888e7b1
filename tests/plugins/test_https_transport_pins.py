"""Pins the ``https`` transport accepts, where they may sit, and who hears of a mismatch.

The hook tests build a real ``Strongroom`` stack from a config with a real
hook plugin registered; the servers are real TLS servers on loopback.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from https_support import GET, https, ok, pins, stack_with_transport

from strongroom import AuditEvent, hookimpl
from strongroom.errors import PinMismatchError
from strongroom.transport import TransportBinding
from tls_servers import Pki, make_pki, serve_recording


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Keys the server does not hold."""
    return make_pki(tmp_path_factory.mktemp("other"), organization="Elsewhere")


class PinListener:
    """A hook plugin that records pin failures and audit events."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, list[str], list[str]]] = []
        self.events: list[AuditEvent] = []

    @hookimpl
    def strongroom_pin_failure(
        self, host: str, presented: Sequence[str], expected: Sequence[str]
    ) -> None:
        self.failures.append((host, list(presented), list(expected)))

    @hookimpl
    def strongroom_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.mark.parametrize("position", ["leaf", "intermediate", "root"])
def test_a_pin_on_any_certificate_of_the_verified_chain_passes(pki: Pki, position: str) -> None:
    """The root is never sent by the server: it comes from the trust store (ca_bundle)."""
    pin = getattr(pki, f"{position}_pin")
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=pins("127.0.0.1", pin)) as transport,
    ):
        assert transport.send(GET).body == b"ok"


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [("localhost", True), ("**.localhost", True), ("*.localhost", False), ("**.other", False)],
)
def test_host_patterns_select_the_pins_of_a_real_host(
    pki: Pki, other: Pki, pattern: str, *, matches: bool
) -> None:
    """``**.localhost`` covers localhost itself, ``*.localhost`` does not (OkHttp's rules).

    Pinned to keys the server lacks: a pattern that matches refuses, one
    that does not leaves the host unpinned, and ``require_pins`` refuses it.
    """
    wrong = pins(pattern, other.leaf_pin, other.root_pin)
    with serve_recording(pki.server, respond=ok) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        with https(url, pki, pins=wrong) as transport:
            if matches:
                with pytest.raises(PinMismatchError, match=r"^localhost: pin mismatch"):
                    transport.send(GET)
            else:
                assert transport.send(GET).status == 200
        with (
            https(url, pki, pins=wrong, require_pins=True) as transport,
            pytest.raises(PinMismatchError),
        ):
            transport.send(GET)


def test_require_pins_refuses_a_host_without_pins_before_sending(pki: Pki) -> None:
    table = pins("sync.example.com", pki.leaf_pin, pki.root_pin)
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=table, require_pins=True) as transport,
        pytest.raises(PinMismatchError, match=r"^127\.0\.0\.1: no pin set matches"),
    ):
        transport.send(GET)
    assert server.application_bytes == 0


def test_a_reused_connection_is_checked_once(pki: Pki) -> None:
    table = pins("127.0.0.1", pki.leaf_pin, pki.root_pin)
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=table) as transport,
    ):
        for _ in range(3):
            assert transport.send(GET).status == 200
        assert transport.policy.checks == 1
    assert server.handshakes == 1
    assert len(server.requests) == 3


def test_enforce_mode_fires_the_hook_audits_and_raises(
    pki: Pki, other: Pki, tmp_path: Path
) -> None:
    listener = PinListener()
    with serve_recording(pki.server, respond=ok) as server:
        table = {"url": server.url, "ca_bundle": str(pki.ca_bundle)}
        table["pins"] = pins("127.0.0.1", other.leaf_pin, other.root_pin)
        with (
            stack_with_transport(tmp_path, table, [listener]) as stack,
            pytest.raises(PinMismatchError),
        ):
            stack.transport.send(GET)
    assert server.application_bytes == 0
    presented = [pki.leaf_pin, pki.intermediate_pin, pki.root_pin]
    expected = sorted([other.leaf_pin, other.root_pin])
    assert listener.failures == [("127.0.0.1", presented, expected)]
    (event,) = [e for e in listener.events if e.action == "transport.pin_failed"]
    assert event.account == "alice"
    assert event.outcome == "failure"
    assert event.details["host"] == "127.0.0.1"
    assert event.details["mode"] == "enforce"


@pytest.mark.parametrize("where", ["transport", "pin set"])
def test_report_only_fires_the_hook_and_lets_the_request_through(
    pki: Pki, other: Pki, tmp_path: Path, where: str
) -> None:
    listener = PinListener()
    with serve_recording(pki.server, respond=ok) as server:
        table = {"url": server.url, "ca_bundle": str(pki.ca_bundle)}
        if where == "transport":
            table["mode"] = "report-only"
            table["pins"] = pins("127.0.0.1", other.leaf_pin, other.root_pin)
        else:
            table["pins"] = pins("127.0.0.1", other.leaf_pin, other.root_pin, mode="report-only")
        with stack_with_transport(tmp_path, table, [listener]) as stack:
            assert stack.transport.send(GET).body == b"ok"
    assert [host for host, _, _ in listener.failures] == ["127.0.0.1"]
    assert len(server.requests) == 1
    (event,) = [e for e in listener.events if e.action == "transport.pin_failed"]
    assert event.details["mode"] == "report-only"


def test_a_failing_pin_listener_does_not_weaken_enforcement(
    pki: Pki, other: Pki, tmp_path: Path
) -> None:
    class Broken:
        @hookimpl
        def strongroom_pin_failure(self, host: str) -> None:
            raise RuntimeError("listener bug")

    with serve_recording(pki.server, respond=ok) as server:
        table = {"url": server.url, "ca_bundle": str(pki.ca_bundle)}
        table["pins"] = pins("127.0.0.1", other.leaf_pin, other.root_pin)
        with (
            stack_with_transport(tmp_path, table, [Broken()]) as stack,
            pytest.raises(PinMismatchError),
        ):
            stack.transport.send(GET)
    assert server.application_bytes == 0


def test_expired_pins_may_fall_back_to_chain_verification_with_a_warning(
    pki: Pki, other: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    expired = datetime.date.today() - datetime.timedelta(days=1)
    table = pins("127.0.0.1", other.leaf_pin, other.root_pin, expires=expired, on_expiry="allow")
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=table) as transport,
        caplog.at_level(logging.WARNING, logger="strongroom.pinning"),
    ):
        assert transport.send(GET).status == 200
    assert f"expired on {expired.isoformat()}" in caplog.text


def test_a_transport_outside_a_stack_reports_to_its_binding(pki: Pki, other: Pki) -> None:
    heard: list[str] = []
    binding = TransportBinding(pin_failure=lambda host, presented, expected: heard.append(host))
    table = pins("127.0.0.1", other.leaf_pin, other.root_pin)
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki, pins=table, binding=binding) as transport,
        pytest.raises(PinMismatchError),
    ):
        transport.send(GET)
    assert heard == ["127.0.0.1"]
