"""Conformance suites that plugin authors run against their backends.

Subclass a contract in your own tests (pytest is required)::

    from strongroom.testing import CipherSuiteContract, KnownAnswer

    class TestMySuite(CipherSuiteContract):
        suite_class = MySuite
        known_answers = [KnownAnswer(key=..., nonce=..., aad=..., plaintext=..., ciphertext=...)]

    from strongroom.testing import StoreContract

    class TestMyStore(StoreContract):
        def open_store(self, binding):
            return MyStore(binding=binding)

        def raw_record(self, store, key):      # the stored bytes of record ``key``
            ...

        def put_raw(self, store, key, raw):    # replace them, as an attacker would
            ...

    from strongroom.testing import KeyProviderContract

    class TestMyProvider(KeyProviderContract):
        def make_provider(self):
            return MyProvider()

:class:`MemoryKeyProvider` is the key provider for tests: it keeps its keys
in memory, can be told to refuse or fail, and no config can select it.
"""

from strongroom.testing.cipher_suite import CipherSuiteContract, KnownAnswer
from strongroom.testing.key_provider import KeyProviderContract
from strongroom.testing.providers import MemoryKeyProvider
from strongroom.testing.store import StoreContract, make_account_keys

__all__ = [
    "CipherSuiteContract",
    "KeyProviderContract",
    "KnownAnswer",
    "MemoryKeyProvider",
    "StoreContract",
    "make_account_keys",
]
