"""The store contract's scan finds a key or value however plainly it was written down."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from strongroom.testing._store_leaks import Canary, scan

CANARY = Canary.make("scan")


@pytest.mark.parametrize("before", [0, 1, 2, 3, 7])
@pytest.mark.parametrize(
    "encode",
    [
        lambda data: data,
        lambda data: data.hex().encode(),
        lambda data: data.hex().upper().encode(),
        base64.b64encode,
        base64.urlsafe_b64encode,
        base64.b32encode,
        lambda data: base64.b32hexencode(data).lower(),
        lambda data: data[::-1],
        lambda data: bytes(byte ^ 0x5A for byte in data),
    ],
    ids=["raw", "hex", "HEX", "base64", "base64url", "base32", "base32hex", "reversed", "xor"],
)
def test_a_value_is_found_in_any_common_encoding_at_any_offset(
    tmp_path: Path, before: int, encode: object
) -> None:
    assert callable(encode)
    stored = encode(b"x" * before + CANARY.value + b"trailing bytes")
    (tmp_path / "data").write_bytes(b"header" + stored + b"footer")
    findings, total = scan([tmp_path], CANARY.value_needles())
    assert findings
    assert total > len(CANARY.value)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be"])
def test_a_key_is_found_as_text(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "db").write_bytes(b"\0\1" + CANARY.key.encode(encoding) + b"\0")
    assert scan([tmp_path], CANARY.key_needles())[0]


def test_a_key_is_found_in_a_file_name(tmp_path: Path) -> None:
    (tmp_path / "shard").mkdir()
    (tmp_path / "shard" / CANARY.key.encode().hex()).write_bytes(b"ciphertext")
    [finding] = scan([tmp_path], CANARY.key_needles())[0]
    assert "in the name" in finding


def test_sealed_data_and_a_single_file_root_are_scanned_clean(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere.db"
    database.write_bytes(bytes(range(256)) * 64)
    findings, total = scan([database], {**CANARY.key_needles(), **CANARY.value_needles()})
    assert findings == []
    assert total == 256 * 64
