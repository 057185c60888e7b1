"""The sealed format: round trips, every header and body byte tampered, identity and key swaps.

Every failure must be an ``IntegrityError`` (magic, version, truncated
header) or its detail-free subclass ``AuthenticationError`` (everything
else), and the key commitment must be checked before any AEAD call.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from counting import CountingSuite
from strongroom.cipher_suite import CipherSuite
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyUnavailableError,
    UsageError,
)
from strongroom.formats import Context, open_sealed, peek_key_version, seal, sealed_overhead
from strongroom.formats._fixed import fixed_randomness
from strongroom.formats.sealed import HEAD_SIZE
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

SUITES = [Aes256Gcm, ChaCha20Poly1305, XChaCha20Poly1305]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONTEXT = Context(account="alice", store="notes", record="2024/05/groceries")
PLAINTEXT = b"oat milk, rye bread, 12 eggs"


@pytest.fixture(params=SUITES, ids=lambda cls: cls.name)
def suite(request: pytest.FixtureRequest) -> CipherSuite:
    suite_class: type[CipherSuite] = request.param
    return suite_class()


def lookup(suite: CipherSuite, key: bytes = KEY) -> Callable[[int], tuple[CipherSuite, bytes]]:
    """A ``key_for`` that gives ``key`` for every version, so only the data can refuse."""

    def key_for(_version: int) -> tuple[CipherSuite, bytes]:
        return suite, key

    return key_for


def header_size(suite: CipherSuite) -> int:
    """Prefix, salt and commitment (75 bytes), then the suite's nonce."""
    return HEAD_SIZE + suite.nonce_size


def flip(data: bytes, position: int, bit: int = 0) -> bytes:
    altered = bytearray(data)
    altered[position] ^= 1 << bit
    return bytes(altered)


# round trips


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 100_000])
def test_round_trip(suite: CipherSuite, size: int) -> None:
    plaintext = bytes(i % 253 for i in range(size))
    blob = seal(suite, KEY, 7, plaintext, CONTEXT)
    assert len(blob) == size + header_size(suite) + suite.tag_size == size + sealed_overhead(suite)
    assert open_sealed(blob, lookup(suite), CONTEXT) == plaintext


def test_layout_of_the_header(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 0x01020304, PLAINTEXT, CONTEXT)
    assert blob[:4] == b"SRsl"
    assert blob[4] == 2
    assert int.from_bytes(blob[5:7], "big") == suite.code
    assert blob[7:11] == bytes([1, 2, 3, 4])
    assert HEAD_SIZE == 75
    assert header_size(suite) == {12: 87, 24: 99}[suite.nonce_size]
    nonce = blob[HEAD_SIZE : header_size(suite)]
    assert nonce[-4:] == bytes(4)  # a batch of its own: counter 0 under a random prefix


def test_salt_is_fresh_each_time(suite: CipherSuite) -> None:
    """``seal`` makes a batch of one: a fresh salt and nonce prefix every call."""
    first, second = (seal(suite, KEY, 1, PLAINTEXT, CONTEXT) for _ in range(2))
    assert first[11:43] != second[11:43]
    assert first[75:] != second[75:]
    assert first[75 : header_size(suite) - 4] != second[75 : header_size(suite) - 4]


def test_takes_memoryviews_and_bytearrays(suite: CipherSuite) -> None:
    key = bytearray(KEY)
    blob = seal(suite, memoryview(key), 1, memoryview(bytearray(PLAINTEXT)), CONTEXT)

    def key_for(_version: int) -> tuple[CipherSuite, memoryview]:
        return suite, memoryview(key)

    assert open_sealed(memoryview(bytearray(blob)), key_for, CONTEXT) == PLAINTEXT


def test_peek_key_version(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 4_000_000_000, PLAINTEXT, CONTEXT)
    assert peek_key_version(blob) == 4_000_000_000
    assert peek_key_version(blob[:11]) == 4_000_000_000
    with pytest.raises(IntegrityError, match="not a strongroom"):
        peek_key_version(b"XXXX" + blob[4:])


def test_key_for_gets_the_header_version(suite: CipherSuite) -> None:
    asked: list[int] = []

    def key_for(version: int) -> tuple[CipherSuite, bytes]:
        asked.append(version)
        return suite, KEY

    open_sealed(seal(suite, KEY, 42, PLAINTEXT, CONTEXT), key_for, CONTEXT)
    assert asked == [42]


def test_key_for_errors_propagate_unchanged(suite: CipherSuite) -> None:
    destroyed = KeyUnavailableError("version 3 was destroyed")

    def key_for(_version: int) -> tuple[CipherSuite, bytes]:
        raise destroyed

    with pytest.raises(KeyUnavailableError) as caught:
        open_sealed(seal(suite, KEY, 3, PLAINTEXT, CONTEXT), key_for, CONTEXT)
    assert caught.value is destroyed


# not a sealed object


def test_unknown_magic_and_version_are_named() -> None:
    suite = Aes256Gcm()
    blob = seal(suite, KEY, 1, PLAINTEXT, CONTEXT)
    with pytest.raises(IntegrityError, match=r"^not a strongroom sealed object$") as caught:
        open_sealed(b"SRck" + blob[4:], lookup(suite), CONTEXT)
    assert not isinstance(caught.value, AuthenticationError)
    for version in (0, 3, 255):
        with pytest.raises(IntegrityError, match=rf"^unsupported format version {version}$"):
            open_sealed(blob[:4] + bytes([version]) + blob[5:], lookup(suite), CONTEXT)
    for short in (b"", b"SR", b"SRsl", blob[:11], blob[:74]):
        with pytest.raises(IntegrityError):
            open_sealed(short, lookup(suite), CONTEXT)


# tampering


def test_every_header_byte_is_authenticated(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 5, PLAINTEXT, CONTEXT)
    for position in range(header_size(suite)):
        altered = flip(blob, position, bit=position % 8)
        with pytest.raises(IntegrityError) as caught:
            open_sealed(altered, lookup(suite), CONTEXT)
        if position >= 5:  # past magic and version: detail-free
            assert type(caught.value) is AuthenticationError, position
            assert str(caught.value) == "authentication failed"


def test_every_body_byte_is_authenticated(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 5, PLAINTEXT, CONTEXT)
    for position in range(header_size(suite), len(blob)):
        with pytest.raises(AuthenticationError):
            open_sealed(flip(blob, position, bit=(position * 3) % 8), lookup(suite), CONTEXT)


def test_truncation_and_appending_fail(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 5, PLAINTEXT, CONTEXT)
    for length in range(len(blob)):
        with pytest.raises(IntegrityError):
            open_sealed(blob[:length], lookup(suite), CONTEXT)
    for extra in (b"\x00", bytes(16), blob[header_size(suite) :]):
        with pytest.raises(AuthenticationError):
            open_sealed(blob + extra, lookup(suite), CONTEXT)


@pytest.mark.parametrize(
    "other",
    [
        Context(account="mallory", store="notes", record="2024/05/groceries"),
        Context(account="alice", store="files", record="2024/05/groceries"),
        Context(account="alice", store="notes", record="2024/05/groceries.bak"),
        Context(account="alicenotes", store="", record="2024/05/groceries"),
    ],
    ids=["account", "store", "record", "boundary"],
)
def test_moving_to_another_identity_fails(suite: CipherSuite, other: Context) -> None:
    blob = seal(suite, KEY, 5, PLAINTEXT, CONTEXT)
    with pytest.raises(AuthenticationError):
        open_sealed(blob, lookup(suite), other)


def test_relabelled_key_version_fails(suite: CipherSuite) -> None:
    blob = seal(suite, KEY, 5, PLAINTEXT, CONTEXT)
    relabelled = blob[:7] + (6).to_bytes(4, "big") + blob[11:]
    # Version 6 maps to the very same key: only the authenticated header refuses it.
    with pytest.raises(AuthenticationError):
        open_sealed(relabelled, lookup(suite), CONTEXT)

    # Version 6 maps to another key: the commitment refuses it.
    def key_for(version: int) -> tuple[CipherSuite, bytes]:
        return suite, KEY if version == 5 else OTHER_KEY

    with pytest.raises(AuthenticationError):
        open_sealed(relabelled, key_for, CONTEXT)


def test_whole_ciphertexts_swapped_between_records_fail(suite: CipherSuite) -> None:
    here = Context(account="alice", store="notes", record="a")
    there = Context(account="alice", store="notes", record="b")
    blob_here = seal(suite, KEY, 1, b"secret a", here)
    blob_there = seal(suite, KEY, 1, b"secret b", there)
    with pytest.raises(AuthenticationError):
        open_sealed(blob_there, lookup(suite), here)
    with pytest.raises(AuthenticationError):
        open_sealed(blob_here, lookup(suite), there)


# key commitment


def test_wrong_key_fails_before_any_decryption() -> None:
    counting = CountingSuite()
    blob = seal(counting, KEY, 1, PLAINTEXT, CONTEXT)
    with pytest.raises(AuthenticationError) as caught:
        open_sealed(blob, lookup(counting, OTHER_KEY), CONTEXT)
    assert str(caught.value) == "authentication failed"
    assert counting.decryptions == 0
    assert open_sealed(blob, lookup(counting), CONTEXT) == PLAINTEXT
    assert counting.decryptions == 1


def test_rewritten_commitment_does_not_open_under_another_key() -> None:
    """An attacker who knows a second key rewrites the commitment to match it: still refused."""
    counting = CountingSuite()
    blob = seal(counting, KEY, 1, PLAINTEXT, CONTEXT)
    # The commitment the second key gives for this salt, taken from a real
    # object made with the same salt under that key.
    salt = blob[11:43]
    with fixed_randomness(salt=salt):
        forged_commitment = seal(counting, OTHER_KEY, 1, b"", CONTEXT)[43:75]
    forged = blob[:43] + forged_commitment + blob[75:]
    with pytest.raises(AuthenticationError):
        open_sealed(forged, lookup(counting, OTHER_KEY), CONTEXT)
    assert counting.decryptions == 1  # the commitment passed; the AEAD refused
    with pytest.raises(AuthenticationError):
        open_sealed(forged, lookup(counting, KEY), CONTEXT)
    assert counting.decryptions == 1  # the true key now fails the commitment


def test_suite_other_than_the_header_fails_before_decryption() -> None:
    blob = seal(Aes256Gcm(), KEY, 1, PLAINTEXT, CONTEXT)
    with pytest.raises(AuthenticationError):
        open_sealed(blob, lookup(ChaCha20Poly1305()), CONTEXT)
    counting = CountingSuite()
    blob = seal(ChaCha20Poly1305(), KEY, 1, PLAINTEXT, CONTEXT)
    relabelled = blob[:5] + counting.code.to_bytes(2, "big") + blob[7:]
    with pytest.raises(AuthenticationError):
        open_sealed(relabelled, lookup(counting), CONTEXT)
    assert counting.decryptions == 0


# arguments


def test_bad_arguments_are_usage_errors() -> None:
    suite = Aes256Gcm()
    with pytest.raises(UsageError):
        seal(suite, KEY[:16], 1, PLAINTEXT, CONTEXT)
    for version in (-1, 2**32):
        with pytest.raises(UsageError):
            seal(suite, KEY, version, PLAINTEXT, CONTEXT)
    blob = seal(suite, KEY, 1, PLAINTEXT, CONTEXT)
    with pytest.raises(UsageError):
        open_sealed(blob, lookup(suite, KEY[:31]), CONTEXT)


def test_context_encoding() -> None:
    encoded = Context(account="a", store="bc", record="é").encode()
    assert encoded == b"strongroom/ctx/v1\x00\x01a\x00\x02bc\x00\x02\xc3\xa9"
    assert Context("ab", "c", "").encode() != Context("a", "bc", "").encode()
    Context("x" * 0xFFFF, "", "")
    with pytest.raises(UsageError):
        Context("x" * 0x10000, "", "")
    with pytest.raises(UsageError):
        Context("a", "b", "\ud800")
    with pytest.raises(UsageError):
        Context("a", "b", 3)  # type: ignore[arg-type]
