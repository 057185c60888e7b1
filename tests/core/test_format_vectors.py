"""Test vectors for the sealed and chunked formats, checked two ways.

``tests/vectors/format-sealed.json`` (sealed version 2) and
``format-chunked.json`` were made by strongroom with fixed salts and nonce
prefixes.  This module checks that strongroom still makes exactly those
bytes and opens them, and that a reference decoder written here from
``docs/formats.md`` alone opens them too.  ``format-sealed-v1.json`` holds
sealed version 1 objects, which strongroom no longer writes: it is frozen,
and both decoders must keep opening it.  The reference decoder shares no
code with ``strongroom.formats``: it uses only the primitives
(cryptography's HKDF, AESGCM and ChaCha20Poly1305, PyNaCl's
XChaCha20-Poly1305) and its own byte slicing.

Run ``python tests/core/test_format_vectors.py`` to rewrite the generated
files after an intended format change (which also needs a new format version).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt

from strongroom.cipher_suite import CipherSuite
from strongroom.formats import Context, Subkeys, decrypt_stream, encrypt_stream, open_sealed
from strongroom.formats._fixed import fixed_randomness
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305 as ChaChaSuite
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SEALED_FILE = VECTORS / "format-sealed.json"
SEALED_V1_FILE = VECTORS / "format-sealed-v1.json"
CHUNKED_FILE = VECTORS / "format-chunked.json"
SUITES: dict[str, type[CipherSuite]] = {
    "aes-256-gcm": Aes256Gcm,
    "chacha20-poly1305": ChaChaSuite,
    "xchacha20-poly1305": XChaCha20Poly1305,
}


class Refused(Exception):
    """The reference decoder refused its input."""


# The reference decoder, from docs/formats.md alone.


def ref_context(account: str, store: str, record: str) -> bytes:
    """docs/formats.md, "Context": label, then u16 BE length + UTF-8 of each field."""
    out = b"strongroom/ctx/v1"
    for field in (account, store, record):
        data = field.encode("utf-8")
        out += len(data).to_bytes(2, "big") + data
    return out


def ref_decrypt(code: int, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Open ``ciphertext || tag`` with the suite a header code names."""
    try:
        if code == 0x0001:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        if code == 0x0002:
            return ChaCha20Poly1305(key).decrypt(nonce, sealed, aad)
        if code == 0x0003:
            opened: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, key)
            return opened
    except Exception as error:
        raise Refused("tag did not verify") from error
    raise Refused(f"unknown suite {code:#06x}")


NONCE_SIZES = {0x0001: 12, 0x0002: 12, 0x0003: 24}


def ref_derive(
    data_key: bytes, salt: bytes, kind: bytes, code: int, nonce_material: int
) -> tuple[bytes, bytes, bytes]:
    """docs/formats.md, "Per-object keys": HKDF-SHA256, split key(32) | commitment(32) | rest."""
    info = b"strongroom/v1/" + kind + b"/" + code.to_bytes(2, "big")
    okm = HKDF(hashes.SHA256(), 32 + 32 + nonce_material, salt, info).derive(data_key)
    return okm[:32], okm[32:64], okm[64:]


def ref_derive_batch(data_key: bytes, salt: bytes, code: int) -> tuple[bytes, bytes]:
    """docs/formats.md, "Per-object keys", kind ``batch``: subkey(32) | commitment(32)."""
    info = b"strongroom/v1/batch/" + code.to_bytes(2, "big")
    okm = HKDF(hashes.SHA256(), 32 + 32, salt, info).derive(data_key)
    return okm[:32], okm[32:]


def ref_open_sealed(blob: bytes, data_key: bytes, context: bytes) -> bytes:
    """docs/formats.md, "Sealed objects": version 2, or version 1 below."""
    if blob[0:4] != b"SRsl" or blob[4] not in (1, 2):
        raise Refused("not a sealed v1 or v2 object")
    if blob[4] == 1:
        return ref_open_sealed_v1(blob, data_key, context)
    code = int.from_bytes(blob[5:7], "big")
    end = 75 + NONCE_SIZES[code]
    header, nonce = blob[:end], blob[75:end]
    key, expected = ref_derive_batch(data_key, blob[11:43], code)
    if expected != blob[43:75]:
        raise Refused("commitment")
    if len(blob) < end + 16:
        raise Refused("short")
    return ref_decrypt(code, key, nonce, blob[end:], header + context)


def ref_open_sealed_v1(blob: bytes, data_key: bytes, context: bytes) -> bytes:
    """docs/formats.md, "Sealed objects, version 1"."""
    code = int.from_bytes(blob[5:7], "big")
    salt, commitment = blob[11:43], blob[43:75]
    key, expected, nonce = ref_derive(data_key, salt, b"sealed", code, NONCE_SIZES[code])
    if expected != commitment:
        raise Refused("commitment")
    return ref_decrypt(code, key, nonce, blob[75:], blob[:75] + context)


def ref_open_chunked(blob: bytes, data_key: bytes, context: bytes) -> bytes:
    """docs/formats.md, "Chunked objects"."""
    if blob[0:4] != b"SRck" or blob[4] != 1:
        raise Refused("not a chunked v1 object")
    header = blob[:79]
    code = int.from_bytes(header[5:7], "big")
    chunk_size = int.from_bytes(header[11:15], "big")
    salt, commitment = header[15:47], header[47:79]
    key, expected, prefix = ref_derive(data_key, salt, b"chunked", code, NONCE_SIZES[code] - 5)
    if expected != commitment:
        raise Refused("commitment")
    stride = chunk_size + 16
    body = blob[79:]
    pieces = [body[start : start + stride] for start in range(0, len(body), stride)]
    if not pieces:
        raise Refused("no chunks")
    plaintext = b""
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        plaintext += ref_decrypt(code, key, nonce, piece, header + context)
    return plaintext


def ref_manifest(blob: bytes) -> bytes:
    """docs/formats.md, "Manifest"."""
    chunk_size = int.from_bytes(blob[11:15], "big")
    stride = chunk_size + 16
    body = blob[79:]
    pieces = [body[start : start + stride] for start in range(0, len(body), stride)]
    return (
        b"SRmf\x01"
        + len(pieces).to_bytes(4, "big")
        + chunk_size.to_bytes(4, "big")
        + len(blob).to_bytes(8, "big")
        + hashlib.sha256(blob[:79]).digest()
        + b"".join(hashlib.sha256(piece).digest() for piece in pieces)
    )


# Generating the vectors with strongroom.


def context_of(vector: dict[str, Any]) -> Context:
    return Context(**vector["context"])


def key_for_vector(vector: dict[str, Any]) -> Callable[[int], tuple[CipherSuite, bytes]]:
    suite = SUITES[vector["suite"]]()
    data_key = bytes.fromhex(vector["data_key"])

    def key_for(version: int) -> tuple[CipherSuite, bytes]:
        assert version == vector["key_version"]
        return suite, data_key

    return key_for


def sealed_inputs() -> list[dict[str, Any]]:
    """Two batches per suite, of two objects each: their salt and nonce prefix are fixed."""
    inputs = []
    for number, name in enumerate(SUITES):
        prefix_size = NONCE_SIZES[SUITES[name].code] - 4
        inputs.append(
            {
                "suite": name,
                "data_key": bytes(range(32)).hex(),
                "key_version": 1,
                "salt": bytes(range(0x40 + number, 0x60 + number)).hex(),
                "nonce_prefix": bytes(range(0x10 + number, 0x10 + number + prefix_size)).hex(),
                "objects": [
                    {
                        "context": {"account": "alice", "store": "notes", "record": "shopping"},
                        "plaintext": b"".hex(),
                    },
                    {
                        "context": {"account": "alice", "store": "notes", "record": "todo"},
                        "plaintext": b"call the bank".hex(),
                    },
                ],
            }
        )
        inputs.append(
            {
                "suite": name,
                "data_key": bytes(range(0xE0, 0x100)).hex(),
                "key_version": 0x12345678,
                "salt": bytes(range(0x80 + number, 0xA0 + number)).hex(),
                "nonce_prefix": bytes(range(0xF0 - prefix_size - number, 0xF0 - number)).hex(),
                "objects": [
                    {
                        "context": {
                            "account": "bob@example.org",
                            "store": "journal",
                            "record": "2024/räksmörgås",
                        },
                        "plaintext": b"strongroom sealed test vector\n".hex(),
                    },
                    {
                        "context": {
                            "account": "bob@example.org",
                            "store": "journal",
                            "record": "2024/räksmörgås",
                        },
                        "plaintext": b"the same record, sealed again in the same batch".hex(),
                    },
                ],
            }
        )
    return inputs


def make_sealed_vector(inputs: dict[str, Any]) -> dict[str, Any]:
    """Seal the objects in order in one batch; list every intermediate value."""
    suite = SUITES[inputs["suite"]]()
    data_key, salt = bytes.fromhex(inputs["data_key"]), bytes.fromhex(inputs["salt"])
    prefix = bytes.fromhex(inputs["nonce_prefix"])
    with fixed_randomness(salt=salt, nonce_prefix=prefix):
        subkeys = Subkeys(suite, data_key, inputs["key_version"])
    subkey, commitment = ref_derive_batch(data_key, salt, suite.code)
    objects = []
    for counter, entry in enumerate(inputs["objects"]):
        context = Context(**entry["context"])
        blob = subkeys.seal(bytes.fromhex(entry["plaintext"]), context)
        end = 75 + suite.nonce_size
        objects.append(
            {
                **entry,
                "context_encoded": context.encode().hex(),
                "counter": counter,
                "nonce": blob[75:end].hex(),
                "header": blob[:end].hex(),
                "sealed": blob.hex(),
            }
        )
    return {
        **inputs,
        "suite_code": suite.code,
        "subkey": subkey.hex(),
        "commitment": commitment.hex(),
        "objects": objects,
    }


#: Plaintext lengths of the chunked vectors: three chunks with a short last one,
#: an empty plaintext (one empty last chunk), an exact multiple of the chunk size
#: (a full last chunk, no extra empty one).
CHUNKED_LENGTHS = (10000, 0, 8192)


def chunked_plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def chunked_inputs() -> list[dict[str, Any]]:
    return [
        {
            "suite": name,
            "data_key": bytes(range(0x20, 0x40)).hex(),
            "key_version": 3 + number + 3 * variant,
            "salt": bytes(range(0xC0 + number + 3 * variant, 0xE0 + number + 3 * variant)).hex(),
            "context": {"account": "alice", "store": "files", "record": "holiday/day-1.jpg"},
            "chunk_size": 4096,
            "plaintext": {
                "pattern": f"bytes(i % 251 for i in range({length}))",
                "length": length,
                "sha256": hashlib.sha256(chunked_plaintext(length)).hexdigest(),
            },
        }
        for variant, length in enumerate(CHUNKED_LENGTHS)
        for number, name in enumerate(SUITES)
    ]


def make_chunked_vector(inputs: dict[str, Any]) -> dict[str, Any]:
    suite = SUITES[inputs["suite"]]()
    data_key, salt = bytes.fromhex(inputs["data_key"]), bytes.fromhex(inputs["salt"])
    context = context_of(inputs)
    sink = io.BytesIO()
    with fixed_randomness(salt=salt):
        manifest = encrypt_stream(
            io.BytesIO(chunked_plaintext(inputs["plaintext"]["length"])),
            sink,
            suite,
            data_key,
            inputs["key_version"],
            context,
            chunk_size=inputs["chunk_size"],
            manifest=True,
        )
    blob = sink.getvalue()
    key, commitment, prefix = ref_derive(
        data_key, salt, b"chunked", suite.code, suite.nonce_size - 5
    )
    return {
        **inputs,
        "suite_code": suite.code,
        "context_encoded": context.encode().hex(),
        "object_key": key.hex(),
        "commitment": commitment.hex(),
        "nonce_prefix": prefix.hex(),
        "header": blob[:79].hex(),
        "chunked": blob.hex(),
        "manifest": manifest.to_bytes().hex(),
    }


def build_files() -> dict[Path, dict[str, Any]]:
    about = (
        "Generated by strongroom with fixed salts (tests/core/test_format_vectors.py) and "
        "checked against a reference decoder written from docs/formats.md. All byte strings "
        "are hex. object_key, commitment and nonce/nonce_prefix are the HKDF output split "
        "as the spec says; context_encoded is Context.encode()."
    )
    sealed_about = (
        "Generated by strongroom with fixed salts and nonce prefixes "
        "(tests/core/test_format_vectors.py) and checked against a reference decoder written "
        "from docs/formats.md. All byte strings are hex. Each vector is one batch: its objects "
        "were sealed in order by one writer, so they share salt, subkey and commitment (the "
        "HKDF output of kind 'batch' split as the spec says), and each nonce is nonce_prefix "
        "followed by counter as u32 BE. context_encoded is Context.encode()."
    )
    return {
        SEALED_FILE: {
            "format": "strongroom sealed v2",
            "about": sealed_about,
            "vectors": [make_sealed_vector(inputs) for inputs in sealed_inputs()],
        },
        CHUNKED_FILE: {
            "format": "strongroom chunked v1",
            "about": about + " Each plaintext is the pattern its vector names.",
            "vectors": [make_chunked_vector(inputs) for inputs in chunked_inputs()],
        },
    }


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def vectors_in(path: Path) -> list[dict[str, Any]]:
    """The vectors to parametrize with; none while the file is being generated.

    ``test_every_suite_is_covered`` fails if the file is missing or short.
    """
    return list(load(path)["vectors"]) if path.exists() else []


def sealed_vectors() -> list[dict[str, Any]]:
    return vectors_in(SEALED_FILE)


def sealed_v1_vectors() -> list[dict[str, Any]]:
    return vectors_in(SEALED_V1_FILE)


def chunked_vectors() -> list[dict[str, Any]]:
    return vectors_in(CHUNKED_FILE)


def label(vector: dict[str, Any]) -> str:
    return f"{vector['suite']}-v{vector['key_version']}"


# The tests.


def test_strongroom_reproduces_the_files() -> None:
    for path, content in build_files().items():
        assert load(path) == content, f"{path.name} differs from what strongroom makes now"


def test_every_suite_is_covered() -> None:
    assert SEALED_FILE.exists()
    assert SEALED_V1_FILE.exists()
    assert CHUNKED_FILE.exists()
    assert sorted({vector["suite"] for vector in sealed_vectors()}) == sorted(SUITES)
    assert len(sealed_vectors()) == 6
    assert all(len(vector["objects"]) == 2 for vector in sealed_vectors())
    assert any(entry["plaintext"] == "" for v in sealed_vectors() for entry in v["objects"])
    assert sorted({vector["suite"] for vector in sealed_v1_vectors()}) == sorted(SUITES)
    assert len(sealed_v1_vectors()) == 6
    assert sorted(vector["suite"] for vector in chunked_vectors()) == sorted([*SUITES] * 3)


@pytest.mark.parametrize("vector", sealed_vectors(), ids=label)
def test_sealed_vector_opens_with_both_decoders(vector: dict[str, Any]) -> None:
    data_key, salt = bytes.fromhex(vector["data_key"]), bytes.fromhex(vector["salt"])
    code = vector["suite_code"]
    subkey, commitment = ref_derive_batch(data_key, salt, code)
    assert (subkey.hex(), commitment.hex()) == (vector["subkey"], vector["commitment"])
    prefix = bytes.fromhex(vector["nonce_prefix"])
    assert len(prefix) == NONCE_SIZES[code] - 4
    subkeys = Subkeys(SUITES[vector["suite"]](), data_key, vector["key_version"])
    for counter, entry in enumerate(vector["objects"]):
        blob = bytes.fromhex(entry["sealed"])
        plaintext = bytes.fromhex(entry["plaintext"])
        context = ref_context(**entry["context"])
        assert context.hex() == entry["context_encoded"]
        assert entry["counter"] == counter
        assert entry["nonce"] == (prefix + counter.to_bytes(4, "big")).hex()
        assert blob[:4] == b"SRsl"
        assert blob[4] == 2
        assert blob[5:7] == code.to_bytes(2, "big")
        assert blob[7:11] == vector["key_version"].to_bytes(4, "big")
        assert blob[11:43] == salt
        assert blob[43:75] == commitment
        assert len(blob) == 75 + NONCE_SIZES[code] + len(plaintext) + 16
        assert ref_open_sealed(blob, data_key, context) == plaintext
        strongroom_context = Context(**entry["context"])
        assert open_sealed(blob, key_for_vector(vector), strongroom_context) == plaintext
        assert open_sealed(blob, lambda _v: subkeys, strongroom_context) == plaintext


@pytest.mark.parametrize("vector", sealed_v1_vectors(), ids=label)
def test_sealed_version_1_still_opens_with_both_decoders(vector: dict[str, Any]) -> None:
    """The frozen version 1 vectors: written by the previous writer, still read."""
    blob = bytes.fromhex(vector["sealed"])
    plaintext = bytes.fromhex(vector["plaintext"])
    context = ref_context(**vector["context"])
    assert context.hex() == vector["context_encoded"]
    data_key, salt = bytes.fromhex(vector["data_key"]), bytes.fromhex(vector["salt"])
    nonce_size = NONCE_SIZES[vector["suite_code"]]
    key, commitment, nonce = ref_derive(data_key, salt, b"sealed", vector["suite_code"], nonce_size)
    assert (key.hex(), commitment.hex(), nonce.hex()) == (
        vector["object_key"],
        vector["commitment"],
        vector["nonce"],
    )
    assert ref_open_sealed(blob, data_key, context) == plaintext
    assert open_sealed(blob, key_for_vector(vector), context_of(vector)) == plaintext
    subkeys = Subkeys(SUITES[vector["suite"]](), data_key, vector["key_version"])
    assert open_sealed(blob, lambda _v: subkeys, context_of(vector)) == plaintext
    assert len(blob) == 75 + len(plaintext) + 16
    assert blob[4] == 1
    assert blob[7:11] == vector["key_version"].to_bytes(4, "big")


@pytest.mark.parametrize("vector", chunked_vectors(), ids=label)
def test_chunked_vector_opens_with_both_decoders(vector: dict[str, Any]) -> None:
    blob = bytes.fromhex(vector["chunked"])
    length = vector["plaintext"]["length"]
    plaintext = chunked_plaintext(length)
    assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext"]["sha256"]
    context = ref_context(**vector["context"])
    data_key = bytes.fromhex(vector["data_key"])
    assert ref_open_chunked(blob, data_key, context) == plaintext
    sink = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), sink, key_for_vector(vector), context_of(vector))
    assert sink.getvalue() == plaintext
    assert ref_manifest(blob).hex() == vector["manifest"]
    chunks = max(1, -(-length // vector["chunk_size"]))  # empty: one empty last chunk
    assert len(blob) == 79 + length + 16 * chunks


def test_the_chunked_vectors_cover_the_edge_lengths() -> None:
    lengths = {vector["plaintext"]["length"] for vector in chunked_vectors()}
    assert lengths == {10000, 0, 8192}


@pytest.mark.parametrize("vector", sealed_vectors()[::2], ids=label)
def test_reference_decoder_refuses_what_strongroom_refuses(vector: dict[str, Any]) -> None:
    """The reference is a real decoder: a flipped header or nonce byte or another context fails."""
    entry = vector["objects"][1]
    blob = bytes.fromhex(entry["sealed"])
    data_key = bytes.fromhex(vector["data_key"])
    context = ref_context(**entry["context"])
    for position in (9, 20, 50, 75, 75 + NONCE_SIZES[vector["suite_code"]] - 1, len(blob) - 1):
        with pytest.raises(Refused):
            ref_open_sealed(
                blob[:position] + bytes([blob[position] ^ 1]) + blob[position + 1 :],
                data_key,
                context,
            )
    with pytest.raises(Refused):
        ref_open_sealed(blob, data_key, ref_context("alice", "notes", "other"))
    v1 = bytes.fromhex(sealed_v1_vectors()[0]["sealed"])
    with pytest.raises(Refused):
        ref_open_sealed(
            v1[:4] + b"\x02" + v1[5:],
            bytes.fromhex(sealed_v1_vectors()[0]["data_key"]),
            ref_context("alice", "notes", "shopping"),
        )


if __name__ == "__main__":
    for path, content in build_files().items():
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")
