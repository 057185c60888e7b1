"""The pin policy on its own: OkHttp's host patterns, chain matching, expiry, modes, cost.

Chains are real DER certificates from trustme; the TLS side is tested with
the ``https`` transport (tests/plugins/test_https_transport_*.py).
"""

from __future__ import annotations

import datetime
import logging

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from strongroom.errors import PinMismatchError, TransportError
from strongroom.pinning import (
    PinPolicy,
    PinSet,
    _spki_digest_of_der,
    host_matches,
    pattern_error,
    pin_of_der,
)
from strongroom.pins import parse_pin, spki_pin

ROOT = trustme.CA()
INTERMEDIATE = ROOT.create_child_ca()
LEAF = INTERMEDIATE.issue_cert("sync.example.com")
CHAIN = [  # leaf, intermediate, root: a verified chain ends at its trust anchor
    x509.load_pem_x509_certificate(blob.bytes()) for blob in [*LEAF.cert_chain_pems, ROOT.cert_pem]
]
DER = [cert.public_bytes(Encoding.DER) for cert in CHAIN]
PINS = [spki_pin(cert) for cert in CHAIN]  # leaf, intermediate, root
OTHER_PIN = spki_pin(x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes()))


def pin_set(pattern: str, *pins: str, **options: object) -> PinSet:
    return PinSet(pattern, frozenset(parse_pin(pin) for pin in pins), **options)  # type: ignore[arg-type]


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def __call__(self, host: str, presented: object, expected: object) -> None:
        self.calls.append((host, list(presented), list(expected)))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("sync.example.com", "sync.example.com", True),
        ("sync.example.com", "SYNC.example.com.", True),
        ("sync.example.com", "us.sync.example.com", False),
        ("sync.example.com", "example.com", False),
        ("*.example.com", "sync.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "badexample.com", False),
        ("**.example.com", "example.com", True),
        ("**.example.com", "sync.example.com", True),
        ("**.example.com", "a.b.example.com", True),
        ("**.example.com", "badexample.com", False),
        ("**.example.com", "example.com.evil.net", False),
    ],
)
def test_host_patterns_follow_okhttp(pattern: str, host: str, *, matches: bool) -> None:
    assert pattern_error(pattern) is None
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    "pattern", ["*", "**", "*.", "a.*.com", "***.example.com", "Example.com", "a..b", "x.*"]
)
def test_malformed_host_patterns_are_named(pattern: str) -> None:
    assert pattern_error(pattern) is not None


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_pin_anywhere_in_the_verified_chain_passes(position: int) -> None:
    policy = PinPolicy([pin_set("sync.example.com", PINS[position], OTHER_PIN)])
    policy.check("sync.example.com", DER)


def test_the_pins_of_every_matching_pattern_are_unioned() -> None:
    policy = PinPolicy(
        [
            pin_set("sync.example.com", OTHER_PIN),
            pin_set("**.example.com", PINS[2]),
        ]
    )
    policy.check("sync.example.com", DER)


def test_a_mismatch_reports_then_raises_naming_host_and_presented_pins() -> None:
    reports = Reports()
    policy = PinPolicy([pin_set("*.example.com", OTHER_PIN)])
    with pytest.raises(PinMismatchError) as caught:
        policy.check("sync.example.com", DER, report=reports)
    assert str(caught.value).startswith("sync.example.com: pin mismatch")
    assert all(pin in str(caught.value) for pin in PINS)
    assert reports.calls == [("sync.example.com", PINS, [OTHER_PIN])]


def test_report_only_reports_and_lets_the_chain_through() -> None:
    reports = Reports()
    PinPolicy([pin_set("sync.example.com", OTHER_PIN, report_only=True)]).check(
        "sync.example.com", DER, report=reports
    )
    PinPolicy([pin_set("sync.example.com", OTHER_PIN)], report_only=True).check(
        "sync.example.com", DER, report=reports
    )
    assert len(reports.calls) == 2


def test_an_enforced_set_wins_over_a_report_only_one_for_the_same_host() -> None:
    policy = PinPolicy(
        [
            pin_set("sync.example.com", OTHER_PIN, report_only=True),
            pin_set("**.example.com", OTHER_PIN),
        ]
    )
    with pytest.raises(PinMismatchError):
        policy.check("sync.example.com", DER)


def test_an_empty_verified_chain_fails_closed_even_without_pins() -> None:
    with pytest.raises(TransportError, match="no verified chain"):
        PinPolicy([]).check("sync.example.com", [])


def test_a_host_without_pins_passes_unless_pins_are_required() -> None:
    PinPolicy([pin_set("other.example.com", OTHER_PIN)]).check("sync.example.com", DER)
    with pytest.raises(PinMismatchError, match=r"sync\.example\.com: no pin set matches"):
        PinPolicy([], require_pins=True).check("sync.example.com", DER)


def test_expired_pins_fail_closed_naming_host_and_date() -> None:
    policy = PinPolicy(
        [pin_set("sync.example.com", PINS[0], expires=datetime.date(2026, 1, 31))],
        today=lambda: datetime.date(2026, 2, 1),
    )
    with pytest.raises(PinMismatchError, match=r"sync\.example\.com: .* expired on 2026-01-31"):
        policy.check("sync.example.com", DER)  # even though the pin matches


def test_pins_hold_on_their_expiry_date() -> None:
    PinPolicy(
        [pin_set("sync.example.com", OTHER_PIN, expires=datetime.date(2026, 1, 31))],
        report_only=True,
        today=lambda: datetime.date(2026, 1, 31),
    ).check("sync.example.com", DER)


def test_expired_pins_may_fail_open_to_chain_verification_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = PinPolicy(
        [
            pin_set(
                "sync.example.com", OTHER_PIN, expires=datetime.date(2020, 1, 1), on_expiry="allow"
            )
        ]
    )
    with caplog.at_level(logging.WARNING, logger="strongroom.pinning"):
        policy.check("sync.example.com", DER)
    assert "expired on 2020-01-01" in caplog.text
    assert "sync.example.com" in caplog.text


def test_pin_of_der_matches_spki_pin() -> None:
    assert [pin_of_der(der) for der in DER] == PINS


def test_a_chain_seen_before_is_not_parsed_again() -> None:
    # what keeps a handshake's check in the tens of microseconds (measured in bench/)
    policy = PinPolicy([pin_set("**.example.com", PINS[2], OTHER_PIN)])
    policy.check("sync.example.com", [bytes(der) for der in DER])
    before = _spki_digest_of_der.cache_info()
    for _ in range(3):
        policy.check("sync.example.com", [bytes(der) for der in DER])  # fresh objects
    after = _spki_digest_of_der.cache_info()
    assert after.misses == before.misses
    assert after.hits - before.hits == 3 * len(DER)
