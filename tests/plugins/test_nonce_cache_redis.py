"""The ``redis`` nonce cache against a real redis-server: both contracts, and several processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer, running_redis
from strongroom import Strongroom, parse_config
from strongroom.errors import ConfigError, IdempotencyUnavailableError, NonceCacheUnavailableError
from strongroom.idempotency import Claim, Outcome, State
from strongroom.settings import SecretRef
from strongroom.testing import (
    AsyncReplayStateContract,
    IdempotencyStoreContract,
    NonceCacheContract,
)
from strongroom_plugins.nonce_caches.redis import RedisNonceCache, RedisNonceCacheSettings

PASSWORD = "pw-7f3c1e9a-never-shown"  # noqa: S105 - the test server's own
WORKER = Path(__file__).with_name("redis_worker.py")
FP = "f" * 64
_PREFIXES = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running_redis(password=PASSWORD) as running:
        yield running


def make(server: RedisServer, clock: Callable[[], float] = time.time, **options: Any) -> Any:
    """A cache on ``server`` under a prefix no other test uses."""
    settings = RedisNonceCacheSettings(
        url=SecretRef("env", "REDIS_URL", environ={"REDIS_URL": options.pop("url", server.url)}),
        key_prefix=f"t{next(_PREFIXES)}:",
        **options,
    )
    return RedisNonceCache(settings, clock=clock)


class TestRedisNonceCache(NonceCacheContract):
    backend_name = "redis"

    @pytest.fixture(autouse=True)
    def _server(self, server: RedisServer) -> None:
        self.server = server

    def make_cache(self, max_entries: int, clock: Callable[[], float]) -> RedisNonceCache:
        cache: RedisNonceCache = make(self.server, clock)  # bounded by memory, not a count
        return cache

    def test_a_nonce_is_kept_until_it_expires_then_forgotten(self) -> None:
        """Redis expires keys on real time: a short window, really waited for."""
        cache = make(self.server)
        assert cache.add("phone.v1", "n1", time.time() + 0.4)
        assert cache.add("phone.v1", "n1", time.time() + 0.4) is False
        time.sleep(0.5)
        assert cache.add("phone.v1", "n1", time.time() + 0.4) is True

    def test_a_full_cache_refuses_and_keeps_what_it_holds(self) -> None:
        """With noeviction and maxmemory reached, every write is refused; nothing is evicted."""
        cache = make(self.server)
        for nonce in ("a", "b", "c"):
            assert cache.add("phone.v1", nonce, time.time() + 600)
        admin = self.server.admin()
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(NonceCacheUnavailableError, match="OutOfMemoryError"):
                cache.add("phone.v1", "d", time.time() + 600)
            with pytest.raises(NonceCacheUnavailableError):  # a replay is refused too
                cache.add("phone.v1", "a", time.time() + 600)
        finally:
            admin.config_set("maxmemory", 0)
        for nonce in ("a", "b", "c"):
            assert cache.add("phone.v1", nonce, time.time() + 600) is False


class TestRedisIdempotencyStore(IdempotencyStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, server: RedisServer) -> None:
        self.server = server

    def make_store(self, max_entries: int, clock: Callable[[], float]) -> RedisNonceCache:
        store: RedisNonceCache = make(self.server, clock)
        return store

    def advance(self, clock: Any, seconds: float) -> None:
        clock.now += seconds
        time.sleep(seconds)

    def test_an_outcome_is_kept_a_day_by_default(self, store: RedisNonceCache) -> None:
        store.begin("phone.v1", "op-1", FP)
        store.complete("phone.v1", "op-1", FP, Outcome(200, (), b"x"))
        ttl = self.server.admin().pttl(f"{store.settings.key_prefix}idem:phone.v1:op-1")
        assert 86_399_000 <= ttl <= 86_400_000

    def test_a_full_store_refuses_new_keys_and_keeps_what_it_holds(self, clock: Any) -> None:
        store = make(self.server)
        for key in ("a", "b"):
            assert store.begin("phone.v1", key, FP).state is State.NEW
        store.complete("phone.v1", "a", FP, Outcome(200, (), b"kept"))
        admin = self.server.admin()
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(IdempotencyUnavailableError, match="OutOfMemoryError"):
                store.begin("phone.v1", "d", FP)
            assert store.begin("phone.v1", "a", FP).outcome == Outcome(200, (), b"kept")
            assert store.begin("phone.v1", "b", FP).state is State.IN_FLIGHT
        finally:
            admin.config_set("maxmemory", 0)


class TestRedisAwaitableSteps(AsyncReplayStateContract):
    @pytest.fixture(autouse=True)
    def _server(self, server: RedisServer) -> None:
        self.server = server

    def make_state(self, clock: Callable[[], float]) -> RedisNonceCache:
        state: RedisNonceCache = make(self.server, clock)
        return state

    def test_the_nonce_and_the_claim_take_one_round_trip(self, state: RedisNonceCache) -> None:
        admin = self.server.admin()
        before = _calls(admin)

        async def steps() -> None:
            await state.admit("phone.v1", "n0", time.time() + 60)  # connects, checks the policy
            before.update(_calls(admin))
            await state.admit("phone.v1", "n1", time.time() + 60, Claim("phone.v1", "op", FP))

        AsyncReplayStateContract.run(state, steps)
        after = _calls(admin)
        ran = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
        # one EVALSHA from the client; the rest ran inside its script
        assert {name: count for name, count in ran.items() if count} == {
            "evalsha": 1,
            "set": 1,
            "hmget": 1,
            "hset": 1,
            "pexpire": 1,
        }


def _calls(admin: Any) -> dict[str, int]:
    """Commands the server has run, by name."""
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in admin.info("commandstats").items()
    }


def test_awaited_steps_fail_closed_without_the_password_when_redis_is_gone(
    server: RedisServer,
) -> None:
    state = make(server, url=f"redis://:{PASSWORD}@127.0.0.1:1/0", connect_timeout=0.5)

    async def steps() -> list[str]:
        failures = []
        for step in (
            state.admit("phone.v1", "n1", time.time() + 60),
            state.admit("phone.v1", "n2", time.time() + 60, Claim("phone.v1", "op", FP)),
            state.complete_async("phone.v1", "op", FP, Outcome(200, (), b"x")),
            state.release_async("phone.v1", "op", FP),
        ):
            with pytest.raises(NonceCacheUnavailableError) as caught:
                await step
            failures.append(str(caught.value))
        await state.aclose()
        return failures

    failures = asyncio.run(steps())
    assert all("127.0.0.1:1 cannot answer" in text for text in failures)
    assert not any(PASSWORD in text for text in failures)
    state.close()


def test_awaited_steps_refuse_an_evicting_redis(server: RedisServer) -> None:
    state = make(server)
    admin = server.admin()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(NonceCacheUnavailableError, match="allkeys-lru"):
            AsyncReplayStateContract.run(
                state, lambda: state.admit("phone.v1", "n1", time.time() + 60)
            )
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
    state.close()


def test_close_also_closes_a_loop_that_can_still_run(server: RedisServer) -> None:
    """A loop not yet closed (a test's, a worker's) gets its client closed by close()."""
    state = make(server)
    admin = server.admin()

    def connected() -> set[str]:  # by address: other tests' clients may come and go meanwhile
        return {client["addr"] for client in admin.client_list()}

    before = connected()
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(state.admit("phone.v1", "n1", time.time() + 60))
        opened = connected() - before
        assert len(opened) == 1
        state.close()
        assert not opened & connected()
    finally:
        loop.close()


def test_a_config_selects_it_with_the_url_as_a_secret_reference(server: RedisServer) -> None:
    def stack(table: dict[str, object]) -> Strongroom:
        data = {"strongroom": {"data_dir": "/nonexistent"}, "nonce_cache": table}
        return Strongroom(
            parse_config(data, source="server.toml", environ={"REDIS_URL": server.unix_url})
        )

    with stack({"use": "redis", "url": "env:REDIS_URL", "key_prefix": "cfg:"}) as running:
        cache = running.nonce_cache
        assert isinstance(cache, RedisNonceCache)
        assert cache.add("phone.v1", "n1", time.time() + 60)
        assert not cache.add("phone.v1", "n1", time.time() + 60)
        assert repr(cache) == "<RedisNonceCache url=env:REDIS_URL key_prefix='cfg:'>"
    with (
        stack({"use": "redis", "url": server.url}) as running,
        pytest.raises(ConfigError, match=r"\[nonce_cache\] key 'url'") as refused,
    ):
        running.nonce_cache  # noqa: B018
    assert PASSWORD not in str(refused.value)


def test_an_evicting_policy_is_refused_until_it_is_noeviction(server: RedisServer) -> None:
    now = [time.time()]
    cache = make(server, lambda: now[0])
    assert cache.add("phone.v1", "before", now[0] + 600)
    admin = server.admin()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        now[0] += 61  # the policy is read again every minute
        with pytest.raises(NonceCacheUnavailableError, match="maxmemory-policy allkeys-lru"):
            cache.add("phone.v1", "n1", now[0] + 600)
        with pytest.raises(IdempotencyUnavailableError, match="evicts keys"):
            cache.begin("phone.v1", "op-1", FP)
        fresh = make(server)  # a cache starting against it refuses from the first request
        admin.config_set("maxmemory-policy", "volatile-ttl")
        with pytest.raises(NonceCacheUnavailableError, match="volatile-ttl"):
            fresh.add("phone.v1", "n1", time.time() + 600)
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
    assert cache.add("phone.v1", "n1", now[0] + 600)
    assert fresh.add("phone.v1", "n1", time.time() + 600)


def test_a_redis_that_forbids_config_is_trusted_with_one_warning(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = server.admin()
    admin.acl_setuser(
        "app", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], commands=["+@all", "-config"]
    )
    url = f"redis://app:{PASSWORD}@127.0.0.1:{server.port}/0"
    cache = make(server, url=url)
    with caplog.at_level(logging.WARNING):
        assert cache.add("phone.v1", "n1", time.time() + 60)
        assert cache.begin("phone.v1", "op-1", FP).state is State.NEW
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "noeviction" in warnings[0]
    assert PASSWORD not in warnings[0]


def test_the_password_is_in_no_error_repr_or_log(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = server.url.replace(PASSWORD, PASSWORD + "-wrong")
    with caplog.at_level(logging.DEBUG):
        errors: list[BaseException] = []
        for url in (wrong, server.url.replace(f":{PASSWORD}@", "")):
            cache = make(server, url=url)
            calls: tuple[Callable[[], object], ...] = (
                lambda cache=cache: cache.add("phone.v1", "n1", time.time() + 60),
                lambda cache=cache: cache.begin("phone.v1", "op", FP),
            )
            for call in calls:
                with pytest.raises(NonceCacheUnavailableError) as refused:
                    call()
                errors.append(refused.value)
            assert PASSWORD not in repr(cache)
    assert len(errors) == 4
    for error in errors:
        assert str(error).startswith(f"redis at 127.0.0.1:{server.port} cannot answer")
        assert "\n" not in str(error)
        assert error.__cause__ is None
        assert PASSWORD not in str(error)
    assert PASSWORD not in caplog.text


# -- two server processes on one Redis --------------------------------------------------------


class Worker:
    """A child process serving the cache over JSON lines (``redis_worker.py``)."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "REDIS_URL": url}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read() == {"ready": True}

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the worker exited"
        return json.loads(line)

    def ask(self, **command: Any) -> Any:
        self.send(**command)
        return self.read()

    def close(self) -> str:
        """Stop it; its log (stderr)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def workers(server: RedisServer) -> Iterator[tuple[Worker, Worker]]:
    server.admin().flushall()
    pair = (Worker(server.url), Worker(server.unix_url))
    yield pair
    for worker in pair:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=10)
        for stream in (worker.process.stdin, worker.process.stdout, worker.process.stderr):
            if stream is not None:
                stream.close()


def test_a_nonce_recorded_by_one_process_is_refused_to_the_other(
    workers: tuple[Worker, Worker],
) -> None:
    first, second = workers
    expires = time.time() + 600
    assert first.ask(op="add", key_id="phone.v1", nonce="n1", expires_at=expires) == {"ok": True}
    assert second.ask(op="add", key_id="phone.v1", nonce="n1", expires_at=expires) == {"ok": False}
    assert second.ask(op="add", key_id="phone.v1", nonce="n2", expires_at=expires) == {"ok": True}
    assert first.ask(op="add", key_id="phone.v1", nonce="n2", expires_at=expires) == {"ok": False}


def test_concurrent_begins_from_two_processes_exactly_one_is_new(
    workers: tuple[Worker, Worker],
) -> None:
    keys = [f"op-{index}" for index in range(300)]
    for worker in workers:  # both run the same keys in the same order, at once
        worker.send(op="begin_many", keys=keys, fp=FP)
    first, second = (worker.read()["ok"] for worker in workers)
    for key, one, other in zip(keys, first, second, strict=True):
        assert sorted([one, other]) == ["in_flight", "new"], key
    winner, loser = (workers[0], workers[1]) if first[0] == "new" else (workers[1], workers[0])
    assert winner.ask(op="complete", key="op-0", fp=FP, status=201, body="made") == {"ok": None}
    assert loser.ask(op="begin", key="op-0", fp=FP) == {"ok": ["replay", "made"]}
    assert loser.ask(op="begin", key="op-0", fp="0" * 64) == {"ok": ["mismatch", None]}


def test_a_stopped_redis_fails_both_closed_and_they_recover_after_a_restart(
    server: RedisServer, workers: tuple[Worker, Worker]
) -> None:
    expires = time.time() + 600
    for index, worker in enumerate(workers):
        assert worker.ask(op="add", key_id="phone.v1", nonce=f"a{index}", expires_at=expires)["ok"]
    server.stop()
    try:
        for worker in workers:
            refused = worker.ask(op="add", key_id="phone.v1", nonce="b", expires_at=expires)
            assert refused["error"] == "NonceCacheUnavailableError"
            assert "cannot answer" in refused["message"]
            begun = worker.ask(op="begin", key="op-1", fp=FP)
            assert begun["error"] == "IdempotencyUnavailableError"
    finally:
        server.start()
    first, second = workers
    assert first.ask(op="add", key_id="phone.v1", nonce="c", expires_at=expires) == {"ok": True}
    assert second.ask(op="add", key_id="phone.v1", nonce="c", expires_at=expires) == {"ok": False}
    assert second.ask(op="begin", key="op-1", fp=FP) == {"ok": ["new", None]}
    assert first.ask(op="begin", key="op-1", fp=FP) == {"ok": ["in_flight", None]}
    logs = [worker.close() for worker in workers]
    for log in logs:
        assert "refused: redis at" in log
        assert PASSWORD not in log
