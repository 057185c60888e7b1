"""Conformance suites that plugin authors run against their backends.

Subclass a contract in your own tests (pytest is required)::

    from strongroom.testing import CipherSuiteContract, KnownAnswer

    class TestMySuite(CipherSuiteContract):
        suite_class = MySuite
        known_answers = [KnownAnswer(key=..., nonce=..., aad=..., plaintext=..., ciphertext=...)]
"""

from strongroom.testing.cipher_suite import CipherSuiteContract, KnownAnswer

__all__ = ["CipherSuiteContract", "KnownAnswer"]
