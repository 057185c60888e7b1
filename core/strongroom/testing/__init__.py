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

    from strongroom.testing import ServerStorageContract

    class TestMyServerStorage(ServerStorageContract):
        def open_storage(self):                # the same empty database each call
            return MyServerStorage(...)

    from strongroom.testing import KeyProviderContract

    class TestMyProvider(KeyProviderContract):
        def make_provider(self):
            return MyProvider()

    from strongroom.testing import NonceCacheContract

    class TestMyNonceCache(NonceCacheContract):
        backend_name = "my-cache"

        def make_cache(self, max_entries, clock):
            return MyCache(MySettings(max_entries=max_entries), clock=clock)

    from strongroom.testing import IdempotencyStoreContract

    class TestMyIdempotencyStore(IdempotencyStoreContract):
        def make_store(self, max_entries, clock):
            return MyCache(MySettings(max_entries=max_entries), clock=clock)

    from strongroom.testing import AsyncReplayStateContract

    class TestMyAwaitableSteps(AsyncReplayStateContract):
        def make_state(self, clock):
            return MyCache(MySettings(), clock=clock)

:class:`MemoryKeyProvider` is the key provider for tests: it keeps its keys
in memory, can be told to refuse or fail, and no config can select it.
"""

from strongroom.testing.cipher_suite import CipherSuiteContract, KnownAnswer
from strongroom.testing.idempotency import IdempotencyStoreContract
from strongroom.testing.key_provider import KeyProviderContract
from strongroom.testing.nonce_cache import NonceCacheContract
from strongroom.testing.providers import MemoryKeyProvider
from strongroom.testing.replay_state import AsyncReplayStateContract
from strongroom.testing.server_storage import ServerStorageContract
from strongroom.testing.store import StoreContract, make_account_keys

__all__ = [
    "AsyncReplayStateContract",
    "CipherSuiteContract",
    "IdempotencyStoreContract",
    "KeyProviderContract",
    "KnownAnswer",
    "MemoryKeyProvider",
    "NonceCacheContract",
    "ServerStorageContract",
    "StoreContract",
    "make_account_keys",
]
