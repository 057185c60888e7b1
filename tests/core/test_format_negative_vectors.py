"""Negative vectors: altered sealed and chunked objects, each refused with a named error.

``tests/vectors/format-negative.json`` is made from the positive vectors by
the mutations listed here (run this file to rewrite it).  Each entry names
the error class a reader must raise: ``IntegrityError`` for what is not an
object of the format at all (magic, version, a length below the header, a
chunk size out of range), ``AuthenticationError`` for everything that
parses but does not authenticate.  strongroom must raise exactly that class
and release no plaintext that did not verify (a stream decrypted to a sink
may already hold whole verified chunks, see docs/formats.md, "Partial
output"); the reference decoder of ``test_format_vectors``
must refuse every one too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_format_vectors import (
    Refused,
    chunked_vectors,
    ref_context,
    ref_open_chunked,
    ref_open_sealed,
    sealed_vectors,
)

from strongroom.errors import AuthenticationError, IntegrityError, StrongroomError
from strongroom.formats import Context, decrypt_stream, open_sealed
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

NEGATIVE_FILE = Path(__file__).resolve().parents[1] / "vectors" / "format-negative.json"
SUITES = {suite.name: suite for suite in (Aes256Gcm, ChaCha20Poly1305, XChaCha20Poly1305)}
ERRORS: dict[str, type[StrongroomError]] = {
    "IntegrityError": IntegrityError,
    "AuthenticationError": AuthenticationError,
}
Mutation = Callable[[bytes], bytes]


def flip(position: int) -> Mutation:
    return lambda blob: blob[:position] + bytes([blob[position] ^ 0x01]) + blob[position + 1 :]


def put(position: int, value: bytes) -> Mutation:
    return lambda blob: blob[:position] + value + blob[position + len(value) :]


#: name -> (mutation, error).  Offsets: docs/formats.md, "Sealed objects".
SEALED_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "magic changed": (flip(0), "IntegrityError"),
    "format version 3": (put(4, b"\x03"), "IntegrityError"),
    "shorter than a header": (lambda blob: blob[:74], "IntegrityError"),
    "suite code changed": (flip(6), "AuthenticationError"),
    "salt altered": (flip(11), "AuthenticationError"),
    "commitment altered": (flip(43), "AuthenticationError"),
    "nonce altered": (flip(75), "AuthenticationError"),
    "ciphertext altered": (flip(-17), "AuthenticationError"),
    "tag altered": (flip(-1), "AuthenticationError"),
    "last byte cut": (lambda blob: blob[:-1], "AuthenticationError"),
    "a byte appended": (lambda blob: blob + b"\x00", "AuthenticationError"),
    "header alone": (lambda blob: blob[:75], "AuthenticationError"),
}
#: Offsets: docs/formats.md, "Chunked objects" (79-byte header, chunks of 4096 + 16).
STRIDE = 4096 + 16
CHUNKED_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "magic changed": (flip(0), "IntegrityError"),
    "chunk size below the minimum": (put(11, (1024).to_bytes(4, "big")), "IntegrityError"),
    "salt altered": (flip(15), "AuthenticationError"),
    "commitment altered": (flip(47), "AuthenticationError"),
    "first chunk altered": (flip(79), "AuthenticationError"),
    "last chunk dropped": (lambda blob: blob[: 79 + 2 * STRIDE], "AuthenticationError"),
    "chunks 0 and 1 swapped": (
        lambda blob: (
            blob[:79]
            + blob[79 + STRIDE : 79 + 2 * STRIDE]
            + blob[79 : 79 + STRIDE]
            + blob[79 + 2 * STRIDE :]
        ),
        "AuthenticationError",
    ),
    "last tag cut": (lambda blob: blob[:-16], "AuthenticationError"),
}
#: The context a valid object is opened under instead of its own.
OTHER_CONTEXT = {"account": "alice", "store": "notes", "record": "another record"}


def build() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    for vector in sealed_vectors()[::2]:  # one per suite
        entry = vector["objects"][1]
        blob = bytes.fromhex(entry["sealed"])
        common = {
            "format": "sealed",
            "suite": vector["suite"],
            "data_key": vector["data_key"],
            "key_version": vector["key_version"],
        }
        for name, (mutate, error) in SEALED_MUTATIONS.items():
            cases.append(
                {**common, "name": name, "context": entry["context"], "error": error}
                | {"object": mutate(blob).hex()}
            )
        cases.append(
            {**common, "name": "another record's context", "context": OTHER_CONTEXT}
            | {"error": "AuthenticationError", "object": blob.hex()}
        )
    for vector in chunked_vectors():
        if vector["plaintext"]["length"] != 10000:
            continue
        blob = bytes.fromhex(vector["chunked"])
        for name, (mutate, error) in CHUNKED_MUTATIONS.items():
            cases.append(
                {
                    "format": "chunked",
                    "name": name,
                    "suite": vector["suite"],
                    "data_key": vector["data_key"],
                    "key_version": vector["key_version"],
                    "context": vector["context"],
                    "error": error,
                    "object": mutate(blob).hex(),
                }
            )
    return {
        "format": "strongroom negative vectors",
        "about": (
            "Altered sealed (version 2) and chunked objects made from format-sealed.json and "
            "format-chunked.json by tests/core/test_format_negative_vectors.py. Each must be "
            "refused with the named error class, releasing nothing that did not verify. "
            "Hex throughout."
        ),
        "vectors": cases,
    }


def negative_vectors() -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(NEGATIVE_FILE.read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = data["vectors"]
    return cases


def key_for(case: dict[str, Any]) -> Callable[[int], tuple[Any, bytes]]:
    suite, key = SUITES[case["suite"]](), bytes.fromhex(case["data_key"])
    return lambda _version: (suite, key)


def test_the_file_is_what_the_mutations_make() -> None:
    assert json.loads(NEGATIVE_FILE.read_text(encoding="utf-8")) == build()


def test_every_kind_of_refusal_is_covered() -> None:
    cases = negative_vectors()
    assert {case["error"] for case in cases} == set(ERRORS)
    assert {case["suite"] for case in cases} == set(SUITES)
    assert {case["format"] for case in cases} == {"sealed", "chunked"}


@pytest.mark.parametrize(
    "case", negative_vectors(), ids=lambda c: f"{c['format']}-{c['suite']}-{c['name']}"
)
def test_strongroom_refuses_with_the_named_error(case: dict[str, Any]) -> None:
    blob = bytes.fromhex(case["object"])
    context = Context(**case["context"])
    expected = ERRORS[case["error"]]
    if case["format"] == "sealed":
        with pytest.raises(StrongroomError) as caught:
            open_sealed(blob, key_for(case), context)
    else:
        sink = io.BytesIO()
        with pytest.raises(StrongroomError) as caught:
            decrypt_stream(io.BytesIO(blob), sink, key_for(case), context)
        released = sink.getvalue()  # whole verified chunks only ("Partial output")
        assert len(released) % 4096 == 0
        assert released == bytes(i % 251 for i in range(len(released)))
    assert type(caught.value) is expected


@pytest.mark.parametrize(
    "case", negative_vectors(), ids=lambda c: f"{c['format']}-{c['suite']}-{c['name']}"
)
def test_the_reference_decoder_refuses_them_too(case: dict[str, Any]) -> None:
    blob, key = bytes.fromhex(case["object"]), bytes.fromhex(case["data_key"])
    context = ref_context(**case["context"])
    opener = ref_open_sealed if case["format"] == "sealed" else ref_open_chunked
    with pytest.raises((Refused, ValueError, KeyError, IndexError)):
        opener(blob, key, context)


if __name__ == "__main__":
    NEGATIVE_FILE.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {NEGATIVE_FILE}")
