"""``NonceCacheContract``: what the request verifier relies on from a nonce cache.

Subclass it with ``make_cache(max_entries, clock)`` returning your cache
bounded to ``max_entries`` live nonces and reading time from ``clock()``
(Unix seconds), and ``backend_name``, its entry-point name.  A backend that
cannot be bounded that way (Redis bounds itself by memory) overrides
``test_a_full_cache_refuses_and_keeps_what_it_holds`` with its own proof.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from strongroom._loading import SLOTS_BY_TABLE, load_backend
from strongroom.errors import NonceCacheUnavailableError
from strongroom.nonce_cache import NonceCache

__all__ = ["NonceCacheContract"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class NonceCacheContract:
    """Single use per key id, expiry, atomicity under threads, and failing closed."""

    #: The entry-point name in ``strongroom.nonce_caches``.
    backend_name: str = ""

    def make_cache(self, max_entries: int, clock: Callable[[], float]) -> NonceCache:
        raise NotImplementedError("return your cache, bounded and on this clock")

    @pytest.fixture
    def clock(self) -> _Clock:
        return _Clock()

    @pytest.fixture
    def cache(self, clock: _Clock) -> Any:
        cache = self.make_cache(1_000, clock)
        yield cache
        cache.close()

    def test_the_entry_point_loads_this_backend(self) -> None:
        assert self.backend_name, "set backend_name to the entry-point name"
        backend, _ = load_backend(SLOTS_BY_TABLE["nonce_cache"], self.backend_name)
        assert isinstance(self.make_cache(10, _Clock()), backend)

    def test_a_nonce_is_new_once(self, cache: NonceCache, clock: _Clock) -> None:
        assert cache.add("phone.v1", "n1", clock.now + 600) is True
        assert cache.add("phone.v1", "n1", clock.now + 600) is False
        assert cache.add("phone.v1", "n2", clock.now + 600) is True

    def test_nonces_are_scoped_by_key_id(self, cache: NonceCache, clock: _Clock) -> None:
        assert cache.add("phone.v1", "n1", clock.now + 600)
        assert cache.add("laptop.v1", "n1", clock.now + 600)
        assert cache.add("phone.v2", "n1", clock.now + 600)

    def test_a_nonce_is_kept_until_it_expires_then_forgotten(
        self, cache: NonceCache, clock: _Clock
    ) -> None:
        assert cache.add("phone.v1", "n1", clock.now + 601)
        clock.now += 600
        assert cache.add("phone.v1", "n1", clock.now + 600) is False
        clock.now += 2
        assert cache.add("phone.v1", "n1", clock.now + 600) is True

    def test_a_full_cache_refuses_and_keeps_what_it_holds(self, clock: _Clock) -> None:
        cache = self.make_cache(3, clock)
        for nonce in ("a", "b", "c"):
            assert cache.add("phone.v1", nonce, clock.now + 600)
        with pytest.raises(NonceCacheUnavailableError):
            cache.add("phone.v1", "d", clock.now + 600)
        for nonce in ("a", "b", "c"):
            assert cache.add("phone.v1", nonce, clock.now + 600) is False

    def test_concurrent_adds_of_one_nonce_exactly_one_wins(
        self, cache: NonceCache, clock: _Clock
    ) -> None:
        threads = 16
        barrier = threading.Barrier(threads)
        answers: list[bool] = []
        guard = threading.Lock()

        def add() -> None:
            barrier.wait(timeout=30)
            answer = cache.add("phone.v1", "raced", clock.now + 600)
            with guard:
                answers.append(answer)

        workers = [threading.Thread(target=add) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert sorted(answers) == [False] * (threads - 1) + [True]
