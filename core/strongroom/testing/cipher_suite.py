"""``CipherSuiteContract``: what every cipher suite must do, as pytest tests."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar

import pytest

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import AuthenticationError

__all__ = ["CipherSuiteContract", "KnownAnswer"]

SUITE_GROUP = "strongroom.cipher_suites"
_LENGTHS = (0, 1, 15, 16, 17, 255, 4096, 65537)


@dataclass(frozen=True)
class KnownAnswer:
    """One published test vector: ``ciphertext`` is encrypted data followed by the tag."""

    key: bytes
    nonce: bytes
    aad: bytes
    plaintext: bytes
    ciphertext: bytes
    source: str = ""

    @classmethod
    def from_hex(cls, source: str = "", **fields: str) -> KnownAnswer:
        """Build from hex strings, the form vectors are published in."""
        return cls(source=source, **{name: bytes.fromhex(value) for name, value in fields.items()})


class CipherSuiteContract:
    """Subclass with ``suite_class`` and ``known_answers`` set.

    ``known_answers`` must hold vectors from a published source: a suite that
    only round-trips with itself proves nothing about interoperability.
    Set ``require_entry_point = False`` only for a suite that is not meant to
    be selectable from a config.
    """

    suite_class: ClassVar[type[CipherSuite]]
    known_answers: ClassVar[Sequence[KnownAnswer]] = ()
    require_entry_point: ClassVar[bool] = True

    @pytest.fixture
    def suite(self) -> CipherSuite:
        return self.suite_class()

    def key(self, suite: CipherSuite, fill: int = 0x42) -> bytes:
        return bytes([fill]) * suite.key_size

    def nonce(self, suite: CipherSuite, fill: int = 0x24) -> bytes:
        return bytes([fill]) * suite.nonce_size

    # identity and sizes

    def test_identity_is_well_formed(self, suite: CipherSuite) -> None:
        assert suite.name == suite.name.lower().strip()
        assert suite.name.replace("-", "").isalnum()
        assert isinstance(suite.code, int)
        assert 0 < suite.code <= 0xFFFF

    def test_sizes_meet_strongroom_minimums(self, suite: CipherSuite) -> None:
        assert suite.key_size >= 32, "strongroom's key hierarchy issues 256-bit keys"
        assert suite.nonce_size >= 12
        assert suite.tag_size >= 16

    def test_registered_under_its_name(self, suite: CipherSuite) -> None:
        if not self.require_entry_point:
            pytest.skip("suite is not meant to be selectable from config")
        found = [ep for ep in entry_points(group=SUITE_GROUP) if ep.name == suite.name]
        assert len(found) == 1, f"expected one {SUITE_GROUP} entry point named {suite.name!r}"
        assert found[0].load() is self.suite_class

    # known answers

    def test_known_answers(self, suite: CipherSuite) -> None:
        assert self.known_answers, "supply published known-answer vectors"
        for vector in self.known_answers:
            aead = suite.keyed(vector.key)
            assert aead.encrypt(vector.nonce, vector.plaintext, vector.aad) == vector.ciphertext
            assert aead.decrypt(vector.nonce, vector.ciphertext, vector.aad) == vector.plaintext

    # round trips

    @pytest.mark.parametrize("length", _LENGTHS)
    def test_round_trip(self, suite: CipherSuite, length: int) -> None:
        plaintext = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
        aead = suite.keyed(self.key(suite))
        sealed = aead.encrypt(self.nonce(suite), plaintext, b"context")
        assert len(sealed) == length + suite.tag_size
        assert aead.decrypt(self.nonce(suite), sealed, b"context") == plaintext

    def test_accepts_buffers(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        plaintext = b"buffer protocol"
        sealed = aead.encrypt(self.nonce(suite), memoryview(bytearray(plaintext)), b"")
        assert aead.decrypt(self.nonce(suite), bytearray(sealed), b"") == plaintext

    def test_one_shot_matches_keyed(self, suite: CipherSuite) -> None:
        key, nonce = self.key(suite), self.nonce(suite)
        sealed = suite.encrypt(key, nonce, b"data", b"aad")
        assert sealed == suite.keyed(key).encrypt(nonce, b"data", b"aad")
        assert suite.decrypt(key, nonce, sealed, b"aad") == b"data"

    def test_distinct_nonces_give_distinct_ciphertexts(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        first = aead.encrypt(self.nonce(suite, 1), b"same plaintext", b"")
        second = aead.encrypt(self.nonce(suite, 2), b"same plaintext", b"")
        assert first != second
        assert b"same plaintext" not in first

    def test_into_variants_match(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        nonce, plaintext = self.nonce(suite), b"x" * 1000
        out = bytearray(len(plaintext) + suite.tag_size)
        aead.encrypt_into(nonce, plaintext, b"a", out)
        assert bytes(out) == aead.encrypt(nonce, plaintext, b"a")
        back = bytearray(len(plaintext))
        aead.decrypt_into(nonce, bytes(out), b"a", back)
        assert bytes(back) == plaintext

    # rejection

    def test_every_flipped_bit_is_rejected(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        nonce = self.nonce(suite)
        sealed = aead.encrypt(nonce, b"attack at dawn", b"aad")
        for position in range(len(sealed) * 8):
            tampered = bytearray(sealed)
            tampered[position // 8] ^= 1 << (position % 8)
            with pytest.raises(AuthenticationError):
                aead.decrypt(nonce, bytes(tampered), b"aad")

    def test_truncation_and_extension_are_rejected(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        nonce = self.nonce(suite)
        sealed = aead.encrypt(nonce, b"attack at dawn", b"")
        for candidate in (sealed[:-1], sealed[1:], sealed + b"\0", b"", sealed[: suite.tag_size]):
            with pytest.raises(AuthenticationError):
                aead.decrypt(nonce, candidate, b"")

    def test_unchecked_decrypt_opens_and_refuses_as_decrypt_does(self, suite: CipherSuite) -> None:
        """``KeyedAead.unchecked_decrypt`` may skip checks, never refusals.

        The sealed reader calls it and turns ``ValueError`` and the exceptions
        it names into ``AuthenticationError``: it must open what ``decrypt``
        opens and refuse, with one of those, a flipped bit, a ciphertext
        shorter than a tag, and a short nonce with nothing after it (what a
        truncated object gives).
        """
        aead = suite.keyed(self.key(suite))
        nonce = self.nonce(suite)
        sealed = aead.encrypt(nonce, b"attack at dawn", b"aad")
        decrypt, tag_errors = aead.unchecked_decrypt()
        refusals: tuple[type[Exception], ...] = (*tag_errors, ValueError, AuthenticationError)
        assert decrypt(nonce, sealed, b"aad") == b"attack at dawn"
        attempts = [(nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]))]
        attempts += [(nonce, sealed[:cut]) for cut in range(suite.tag_size)]
        attempts += [(nonce[:cut], b"") for cut in range(len(nonce))]
        for candidate_nonce, candidate in attempts:
            with pytest.raises(refusals):
                decrypt(candidate_nonce, candidate, b"aad")

    def test_wrong_key_nonce_or_aad_is_rejected(self, suite: CipherSuite) -> None:
        key, nonce = self.key(suite), self.nonce(suite)
        sealed = suite.encrypt(key, nonce, b"payload", b"aad")
        wrong = [
            (self.key(suite, 0x43), nonce, b"aad"),
            (key, self.nonce(suite, 0x25), b"aad"),
            (key, nonce, b"aae"),
            (key, nonce, b""),
        ]
        for wrong_key, wrong_nonce, wrong_aad in wrong:
            with pytest.raises(AuthenticationError):
                suite.decrypt(wrong_key, wrong_nonce, sealed, wrong_aad)

    def test_failed_decrypt_into_leaves_no_plaintext(self, suite: CipherSuite) -> None:
        aead = suite.keyed(self.key(suite))
        nonce, plaintext = self.nonce(suite), b"P" * 256
        tampered = bytearray(aead.encrypt(nonce, plaintext, b""))
        tampered[-1] ^= 1
        out = bytearray(b"\xaa" * len(plaintext))
        with pytest.raises(AuthenticationError):
            aead.decrypt_into(nonce, bytes(tampered), b"", out)
        assert b"P" not in out

    def test_wrong_sizes_raise_value_error(self, suite: CipherSuite) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the message is the suite's own
            suite.keyed(b"\0" * (suite.key_size - 1))
        aead = suite.keyed(self.key(suite))
        for size in (0, suite.nonce_size - 1, suite.nonce_size + 1):
            with pytest.raises(ValueError):  # noqa: PT011
                aead.encrypt(b"\0" * size, b"data", b"")

    # secrets stay secret

    def test_keyed_aead_hides_its_key(self, suite: CipherSuite) -> None:
        key = bytes(range(suite.key_size))
        aead = suite.keyed(key)
        text = repr(aead) + str(aead) + repr(suite)
        assert key.hex() not in text
        assert repr(key)[2:-1] not in text
        with pytest.raises(TypeError):
            pickle.dumps(aead)
