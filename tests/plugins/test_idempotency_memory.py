"""The in-process idempotency store behind the ``memory`` nonce cache."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from strongroom.errors import IdempotencyUnavailableError
from strongroom.idempotency import IdempotencyStore, Outcome, State
from strongroom.testing import IdempotencyStoreContract
from strongroom_plugins.nonce_caches._memory_idempotency import MemoryIdempotencyStore
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache

FP = "f" * 64


class TestMemoryIdempotencyStore(IdempotencyStoreContract):
    def make_store(self, max_entries: int, clock: Callable[[], float]) -> MemoryIdempotencyStore:
        return MemoryIdempotencyStore(max_entries=max_entries, clock=clock)


def test_outcomes_are_bounded_by_bytes_and_a_refused_one_frees_its_key() -> None:
    store = MemoryIdempotencyStore(max_bytes=100)
    assert store.begin("k.v1", "big", FP).state is State.NEW
    with pytest.raises(IdempotencyUnavailableError, match="maximum of 100 bytes"):
        store.complete("k.v1", "big", FP, Outcome(200, (), b"x" * 101))
    assert store.begin("k.v1", "big", FP).state is State.NEW
    store.complete("k.v1", "big", FP, Outcome(200, (), b"x" * 100))
    assert store.begin("k.v1", "big", FP).state is State.REPLAY


def test_expired_records_free_their_room() -> None:
    now = [0.0]
    store = MemoryIdempotencyStore(max_entries=1, clock=lambda: now[0])
    store.begin("k.v1", "a", FP, lease_s=10)
    with pytest.raises(IdempotencyUnavailableError, match="maximum of 1 live"):
        store.begin("k.v1", "b", FP)
    now[0] = 11
    assert store.begin("k.v1", "b", FP).state is State.NEW
    assert len(store) == 1


def test_the_repr_of_an_outcome_holds_no_payload() -> None:
    outcome = Outcome(200, (("x-token", "secret-header"),), b"secret-body")
    assert "secret" not in repr(outcome)
    assert "secret" not in repr(MemoryIdempotencyStore())


class TestMemoryNonceCacheIdempotency(IdempotencyStoreContract):
    """The ``memory`` backend itself serves the interface (one object for the whole slot)."""

    def make_store(self, max_entries: int, clock: Callable[[], float]) -> MemoryNonceCache:
        cache = MemoryNonceCache(clock=clock)
        assert isinstance(cache, IdempotencyStore)
        cache._idempotency_store = MemoryIdempotencyStore(max_entries=max_entries, clock=clock)
        return cache


def test_the_memory_backend_keeps_outcomes_on_its_own_clock() -> None:
    now = [100.0]
    cache = MemoryNonceCache(clock=lambda: now[0])
    assert cache.begin("k.v1", "op", FP, lease_s=5).state is State.NEW
    now[0] += 6
    assert cache.begin("k.v1", "op", FP).state is State.NEW
    assert "max_entries=100000" in repr(cache._idempotency())
