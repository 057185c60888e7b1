"""The ``memory`` nonce cache: single use per key id, expiring, bounded, failing closed."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom import Strongroom, parse_config
from strongroom.errors import ConfigError, NonceCacheUnavailableError
from strongroom.testing import AsyncReplayStateContract, NonceCacheContract
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache, MemoryNonceCacheSettings


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryNonceCache(NonceCacheContract):
    backend_name = "memory"

    def make_cache(self, max_entries: int, clock: Clock) -> MemoryNonceCache:
        return MemoryNonceCache(MemoryNonceCacheSettings(max_entries=max_entries), clock=clock)


class TestMemoryAwaitableSteps(AsyncReplayStateContract):
    def make_state(self, clock: Clock) -> MemoryNonceCache:
        return MemoryNonceCache(clock=clock)


def test_expired_entries_are_purged_and_free_their_room() -> None:
    clock = Clock()
    cache = MemoryNonceCache(MemoryNonceCacheSettings(max_entries=3), clock=clock)
    for index in range(3):
        assert cache.add("k.v1", f"n{index}", 1_000 + 10 * (index + 1))
    with pytest.raises(NonceCacheUnavailableError, match="maximum of 3"):
        cache.add("k.v1", "n3", 1_100)
    clock.now = 1_015  # n0 has expired, n1 and n2 have not
    assert cache.add("k.v1", "n3", 1_100)
    assert len(cache) == 3
    assert not cache.add("k.v1", "n1", 1_100)
    clock.now = 2_000
    assert cache.add("k.v1", "n1", 2_100)
    assert len(cache) == 1


def test_a_full_cache_never_evicts_a_live_nonce() -> None:
    clock = Clock()
    cache = MemoryNonceCache(MemoryNonceCacheSettings(max_entries=2), clock=clock)
    assert cache.add("k.v1", "a", 2_000)
    assert cache.add("k.v1", "b", 2_000)
    for fresh in ("c", "d", "e"):
        with pytest.raises(NonceCacheUnavailableError):
            cache.add("k.v1", fresh, 2_000)
    assert not cache.add("k.v1", "a", 2_000)  # a replay is still a replay when full
    assert not cache.add("k.v1", "b", 2_000)


def test_many_threads_many_nonces_each_accepted_once() -> None:
    cache = MemoryNonceCache()
    nonces = [f"n{index}" for index in range(200)]
    accepted: list[str] = []
    guard = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for nonce in nonces:
            if cache.add("k.v1", nonce, 4e9):
                with guard:
                    accepted.append(nonce)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(accepted) == sorted(nonces)


def test_settings_are_bounded() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryNonceCacheSettings.from_table({"max_entries": 0})
    assert "max_entries=1000000" in repr(MemoryNonceCache())


def test_a_config_selects_it_and_its_settings_are_checked(tmp_path: Path) -> None:
    def stack(table: dict[str, object]) -> Strongroom:
        data = {"strongroom": {"data_dir": str(tmp_path)}, "nonce_cache": table}
        return Strongroom(parse_config(data, source="server.toml", environ={}))

    with stack({"use": "memory", "max_entries": 5}) as server:
        cache = server.nonce_cache
        assert isinstance(cache, MemoryNonceCache)
        assert cache.settings.max_entries == 5
        assert server.nonce_cache is cache
    with (
        stack({"use": "memory", "max_entries": 0}) as server,
        pytest.raises(
            ConfigError, match=r"server.toml: \[nonce_cache\] key 'max_entries': expected"
        ),
    ):
        server.nonce_cache  # noqa: B018
