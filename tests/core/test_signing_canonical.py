"""Request signing's canonical strings against ``tests/vectors/request_signing.json``.

The vectors' canonical strings are written out by hand below (``CASES``),
not produced by strongroom, and their MACs, body hashes and the HKDF key
come from the ``openssl`` command line.  ``python tests/core/test_signing_canonical.py``
rewrites the file; the tests then hold strongroom's canonicaliser, signer,
verifier and response check to it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import IntegrityError, RequestVerificationError
from strongroom.signing.canonical import CanonicalError, canonical_request, canonical_response
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.signer import check_response
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncResponse
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "request_signing.json"

DATA_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
ACCOUNT = "alice"
NONCE = "AAECAwQFBgcICQoLDA0ODw"  # bytes 0..15
TIME = "1700000000"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#: A challenge token (opaque to signing), carried by the worked example of docs/formats.md.
TOKEN = "v1.1700000060.EBESExQVFhcYGRobHB0eHw.ZXhhbXBsZS1jaGFsbGVuZ2UtdG9rZW4tbWFjLTAwMDAx"  # noqa: S105
#: Vectors whose request carries a Strongroom-Challenge header, by name; the rest carry none.
CHALLENGES = {
    "sorted by name, repeated parameters in their order, no '=' is an empty value": TOKEN,
    "a challenge token without an idempotency key": TOKEN,
}

#: (name, method, target, body, idempotency key, canonical path, canonical query), by hand.
CASES: list[tuple[str, str, str, str, str, str, str]] = [
    ("no query, empty body", "GET", "/v1/items", "", "", "/v1/items", ""),
    ("empty query after '?'", "GET", "/v1/items?", "", "", "/v1/items", ""),
    ("only empty parameters", "GET", "/v1/items?&&", "", "", "/v1/items", ""),
    ("lower-case method", "delete", "/v1/items/42", "", "", "/v1/items/42", ""),
    (
        "sorted by name, repeated parameters in their order, no '=' is an empty value",
        "POST",
        "/v1/sync?since=5&b=2&a=z&a=y&&flag",
        '{"op":"put"}',
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "/v1/sync",
        "a=z&a=y&b=2&flag=&since=5",
    ),
    (
        "escapes: hex upper-cased, unreserved decoded, '+' and '%2B' and '/' and '%2F' distinct",
        "PUT",
        "/files/a%2fb/%7euser/caf%c3%a9/sp ace?q=%41%62c&plus=a+b&enc=a%2Bb&sp=a%20b",
        "x",
        "",
        "/files/a%2Fb/~user/caf%C3%A9/sp%20ace",
        "enc=a%2Bb&plus=a+b&q=Abc&sp=a%20b",
    ),
    (
        "non-ASCII path and value as UTF-8",
        "GET",
        "/notes/\u65e5\u8a18?tag=\u00e9t\u00e9",
        "",
        "",
        "/notes/%E6%97%A5%E8%A8%98",
        "tag=%C3%A9t%C3%A9",
    ),
    (
        "reserved characters kept as they are; '=' in a value",
        "GET",
        "/a:b@c!$'()*,;=/x?k2=?/&k=v=w",
        "",
        "",
        "/a:b@c!$'()*,;=/x",
        "k=v=w&k2=?/",
    ),
    (
        "a challenge token without an idempotency key",
        "GET",
        "/v1/items",
        "",
        "",
        "/v1/items",
        "",
    ),
    (
        "sorting is by bytes: upper case first",
        "GET",
        "/s?b=1&B=2&a_=3&a-=4&a=5",
        "",
        "",
        "/s",
        "B=2&a=5&a-=4&a_=3&b=1",
    ),
]

#: Targets every implementation must refuse, and why.
REFUSED = [
    ("a '..' segment", "/a/../b"),
    ("an escaped '..' segment", "/a/%2e%2E/b"),
    ("a '.' segment", "/a/./b"),
    ("a trailing '..'", "/a/.."),
    ("a relative path", "v1/items"),
    ("an asterisk", "*"),
    ("a bad escape in the path", "/a%zz"),
    ("a cut escape in the path", "/a%4"),
    ("a bad escape in the query", "/a?x=%"),
    ("a fragment", "/a#frag"),
    ("a fragment in the query", "/a?x=1#frag"),
]

#: (status, body): response vectors, signed for the request nonce above.
RESPONSES = [(200, '{"ok":true}'), (401, ""), (503, "busy")]


def _openssl(*args: str, data: bytes = b"") -> str:
    done = subprocess.run(
        ["openssl", *args], input=data, capture_output=True, check=True, timeout=30
    )
    return done.stdout.decode().strip().rsplit(" ", 1)[-1].replace(":", "").lower()


def _hmac_b64(key_hex: str, message: bytes) -> str:
    mac = ("-mac", "HMAC", "-macopt", f"hexkey:{key_hex}")
    hex_mac = _openssl("dgst", "-sha256", *mac, data=message)
    return base64.urlsafe_b64encode(bytes.fromhex(hex_mac)).rstrip(b"=").decode()


def generate() -> dict[str, Any]:
    """The vectors, from the hand-written cases, with hashes and MACs from openssl."""
    info = b"\x00".join((b"strongroom request-signing v1", ACCOUNT.encode(), b"1"))
    mac_key = _openssl(
        "kdf",
        "-keylen",
        "32",
        "-kdfopt",
        "digest:SHA256",
        "-kdfopt",
        f"hexkey:{DATA_KEY}",
        "-kdfopt",
        f"hexinfo:{info.hex()}",
        "HKDF",
    )
    key_id = "phone-1.v1"
    requests = []
    for name, method, target, body, idempotency, path, query in CASES:
        challenge = CHALLENGES.get(name, "")
        body_hash = _openssl("dgst", "-sha256", data=body.encode())
        canonical = "\n".join(
            [
                "strongroom-request-v1",
                method.upper(),
                path,
                query,
                body_hash,
                TIME,
                NONCE,
                key_id,
                idempotency,
                challenge,
            ]
        )
        requests.append(
            {
                "name": name,
                "method": method,
                "target": target,
                "body": body,
                "idempotency_key": idempotency,
                "challenge": challenge,
                "timestamp": TIME,
                "nonce": NONCE,
                "key_id": key_id,
                "body_sha256": body_hash,
                "canonical": canonical,
                "signature": _hmac_b64(mac_key, canonical.encode()),
                "expect": "valid",
            }
        )
    for name, target in REFUSED:
        requests.append({"name": name, "method": "GET", "target": target, "expect": "malformed"})
    responses = []
    for status, body in RESPONSES:
        body_hash = _openssl("dgst", "-sha256", data=body.encode())
        canonical = "\n".join(
            ["strongroom-response-v1", str(status), body_hash, NONCE, key_id, "1700000003"]
        )
        responses.append(
            {
                "status": status,
                "body": body,
                "request_nonce": NONCE,
                "key_id": key_id,
                "server_time": "1700000003",
                "canonical": canonical,
                "signature": _hmac_b64(mac_key, canonical.encode()),
            }
        )
    return {
        "description": "strongroom request signing, docs/formats.md 'Request signing'",
        "data_key": DATA_KEY,
        "account": ACCOUNT,
        "key_version": 1,
        "hkdf_info": info.hex(),
        "mac_key": mac_key,
        "requests": requests,
        "responses": responses,
    }


def _load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS.read_text())
    return loaded


VALID = [v for v in _load()["requests"] if v["expect"] == "valid"]
MALFORMED = [v for v in _load()["requests"] if v["expect"] == "malformed"]


def _verifier(vector: dict[str, Any], key: bytes) -> RequestVerifier:
    ring = KeyRing({vector["key_id"]: key})
    return RequestVerifier(ring, MemoryNonceCache(), clock=lambda: float(vector["timestamp"]))


def test_the_file_is_what_the_generator_writes() -> None:
    assert _load() == generate()


def test_the_mac_key_is_hkdf_of_the_signing_data_key() -> None:
    vectors = _load()
    derived = derive_mac_key(bytes.fromhex(vectors["data_key"]), vectors["account"], 1)
    assert derived.hex() == vectors["mac_key"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_canonical_request_matches_the_vector(vector: dict[str, Any]) -> None:
    canonical = canonical_request(
        vector["method"],
        vector["target"],
        body_sha256=vector["body_sha256"],
        timestamp=vector["timestamp"],
        nonce=vector["nonce"],
        key_id=vector["key_id"],
        idempotency_key=vector["idempotency_key"],
        challenge=vector["challenge"],
    )
    assert canonical == vector["canonical"].encode()


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_the_verifier_accepts_the_vector_signature(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(_load()["mac_key"])
    headers = {
        "Strongroom-Key-Id": vector["key_id"],
        "Strongroom-Timestamp": vector["timestamp"],
        "Strongroom-Nonce": vector["nonce"],
        "Strongroom-Signature": vector["signature"],
        "Idempotency-Key": vector["idempotency_key"],
        "Strongroom-Challenge": vector["challenge"],
    }
    body = vector["body"].encode()
    verified = _verifier(vector, key).verify(vector["method"], vector["target"], headers, body)
    assert (verified.key_id, verified.nonce) == (vector["key_id"], vector["nonce"])
    assert verified.challenge == vector["challenge"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_stripping_adding_or_changing_the_challenge_breaks_the_signature(
    vector: dict[str, Any],
) -> None:
    key = bytes.fromhex(_load()["mac_key"])
    headers = {
        "Strongroom-Key-Id": vector["key_id"],
        "Strongroom-Timestamp": vector["timestamp"],
        "Strongroom-Nonce": vector["nonce"],
        "Strongroom-Signature": vector["signature"],
        "Idempotency-Key": vector["idempotency_key"],
    }
    altered = TOKEN[:-1] + "2"
    for challenge in {"", TOKEN, altered} - {vector["challenge"]}:
        sent = {**headers, "Strongroom-Challenge": challenge} if challenge else headers
        with pytest.raises(RequestVerificationError) as refused:
            _verifier(vector, key).verify(
                vector["method"], vector["target"], sent, vector["body"].encode()
            )
        assert (refused.value.status, refused.value.reason) == (401, "signature")


@pytest.mark.parametrize("vector", MALFORMED, ids=[v["name"] for v in MALFORMED])
def test_malformed_targets_are_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(CanonicalError):
        canonical_request(
            "GET", vector["target"], body_sha256=EMPTY, timestamp=TIME, nonce=NONCE, key_id="k.v1"
        )
    headers = {
        "Strongroom-Key-Id": "phone-1.v1",
        "Strongroom-Timestamp": TIME,
        "Strongroom-Nonce": NONCE,
        "Strongroom-Signature": "A" * 43,
    }
    verifier = _verifier({"key_id": "phone-1.v1", "timestamp": TIME}, bytes(32))
    with pytest.raises(RequestVerificationError) as refused:
        verifier.verify("GET", vector["target"], headers, b"")
    assert (refused.value.status, refused.value.reason) == (400, "malformed")


@pytest.mark.parametrize("vector", _load()["responses"], ids=lambda v: str(v["status"]))
def test_response_signatures_match_the_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(_load()["mac_key"])
    canonical = canonical_response(
        vector["status"],
        body_sha256=_openssl("dgst", "-sha256", data=vector["body"].encode()),
        nonce=vector["request_nonce"],
        key_id=vector["key_id"],
        server_time=vector["server_time"],
    )
    assert canonical == vector["canonical"].encode()
    headers = {
        "strongroom-response-signature": vector["signature"],
        "strongroom-server-time": vector["server_time"],
    }
    response = SyncResponse(vector["status"], vector["body"].encode(), headers)
    assert check_response(key, vector["key_id"], vector["request_nonce"], response) == int(
        vector["server_time"]
    )
    altered = SyncResponse(vector["status"], vector["body"].encode() + b" ", headers)
    with pytest.raises(IntegrityError):
        check_response(key, vector["key_id"], vector["request_nonce"], altered)


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(generate(), indent=2, ensure_ascii=False) + "\n")
    sys.exit(0)
