"""SPKI pins: computed as openssl computes them, and only well-formed pin strings accepted."""

from __future__ import annotations

import base64
import re
import subprocess

import pytest
import trustme
from cryptography import x509

from strongroom.errors import ConfigError
from strongroom.pins import parse_pin, spki_digest, spki_pin

PIN = re.compile(r"sha256/[A-Za-z0-9+/]{43}=")


def openssl_pin(pem: bytes) -> str:
    """The pin as openssl computes it, the pipeline ``docs/cli.md`` quotes.

    ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der
    | openssl dgst -sha256 -binary | base64``
    """
    stages = [
        ["openssl", "x509", "-pubkey", "-noout"],
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        ["openssl", "dgst", "-sha256", "-binary"],
        ["base64"],
    ]
    data = pem
    for stage in stages:
        data = subprocess.run(stage, input=data, capture_output=True, check=True, timeout=30).stdout
    return "sha256/" + data.decode("ascii").strip()


@pytest.fixture(scope="module", params=[trustme.KeyType.RSA, trustme.KeyType.ECDSA])
def chain(request: pytest.FixtureRequest) -> list[bytes]:
    root = trustme.CA(key_type=request.param)
    intermediate = root.create_child_ca(key_type=request.param)
    leaf = intermediate.issue_cert("localhost", key_type=request.param)
    return [
        leaf.cert_chain_pems[0].bytes(),
        intermediate.cert_pem.bytes(),
        root.cert_pem.bytes(),
    ]


def test_every_pin_equals_openssls(chain: list[bytes]) -> None:
    pins = [spki_pin(x509.load_pem_x509_certificate(pem)) for pem in chain]
    assert pins == [openssl_pin(pem) for pem in chain]
    assert all(PIN.fullmatch(pin) for pin in pins)
    assert len(set(pins)) == 3


def test_a_pin_parses_back_to_its_digest(chain: list[bytes]) -> None:
    for pem in chain:
        certificate = x509.load_pem_x509_certificate(pem)
        digest = parse_pin(spki_pin(certificate))
        assert digest == spki_digest(certificate)
        assert len(digest) == 32


def test_a_pin_names_the_key_not_the_certificate() -> None:
    authority = trustme.CA()
    first = authority.issue_cert("a.example")
    second = authority.issue_cert("b.example")  # another key
    pins = {
        spki_pin(x509.load_pem_x509_certificate(c.cert_chain_pems[0].bytes()))
        for c in (first, second)
    }
    assert len(pins) == 2


GOOD = "sha256/" + base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no 'sha256/' prefix"),
        ("sha256", "no 'sha256/' prefix"),
        (GOOD[len("sha256/") :], "no 'sha256/' prefix"),
        ("/" + GOOD[len("sha256/") :], "no 'sha256/' prefix"),
        ("sha1/" + base64.b64encode(bytes(20)).decode(), "not 'sha1'"),
        ("SHA256/" + GOOD[len("sha256/") :], "not 'SHA256'"),
        ("sha384/" + base64.b64encode(bytes(48)).decode(), "not 'sha384'"),
        ("sha256/", "0 characters"),
        (GOOD[:-1], "43 characters"),
        (GOOD + "=", "45 characters"),
        (" " + GOOD, "no 'sha256/' prefix"),
        (GOOD + "\n", "45 characters"),
        ("sha256/ " + GOOD[8:], "not standard base64"),
        ("sha256/" + base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode(), "not standard base64"),
        ("sha256/" + "é" * 43 + "=", "not standard base64"),
        ("sha256/" + "A" * 44, "not the canonical base64 of 32 bytes"),  # 33 bytes
        ("sha256/" + "A" * 42 + "B=", "not the canonical base64 of 32 bytes"),  # stray bits
        ("sha256/" + "A" * 40 + "AA==", "not the canonical base64 of 32 bytes"),  # 31 bytes
    ],
)
def test_anything_but_a_canonical_sha256_pin_is_refused(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        parse_pin(text)
    assert "as 'strongroom pin' prints it" in str(caught.value)
    assert "\n" not in str(caught.value).replace(repr(text), "")


@pytest.mark.parametrize("value", [None, 42, GOOD.encode(), [GOOD]])
def test_a_pin_must_be_a_string(value: object) -> None:
    with pytest.raises(ConfigError, match="a pin must be a string"):
        parse_pin(value)


def test_the_message_names_where_the_pin_is() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pin("sha1/abc", source="strongroom.toml", location="[transport.pins] 'api.example'")
    assert str(caught.value).startswith("strongroom.toml: [transport.pins] 'api.example': ")
    assert caught.value.exit_code == 2


def test_a_long_bad_pin_is_shortened_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pin("sha256/" + "A" * 1000)
    assert len(str(caught.value)) < 300
