"""The ``redis`` backend's pipelined connection against a real redis-server, and against liars."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis.exceptions

from redis_server import RedisServer, running_redis
from strongroom_plugins.nonce_caches._redis_pipe import RedisPipe

PASSWORD = "pw-pipe-5d21-never-shown"  # noqa: S105 - the test server's own
SCRIPT = "return {KEYS[1], ARGV[1]}"
T = TypeVar("T")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running_redis(password=PASSWORD) as running:
        yield running


def pipe(url: str, timeout: float = 2.0) -> RedisPipe:
    return RedisPipe(url, timeout=timeout, connect_timeout=1.0)


def run(steps: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(steps)


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_concurrent_commands_each_get_their_own_reply(server: RedisServer, where: str) -> None:
    connection = pipe(server.url if where == "tcp" else server.unix_url)

    async def steps() -> list[bytes]:
        try:
            return list(await asyncio.gather(*(connection.call("ECHO", n) for n in range(500))))
        finally:
            await connection.aclose()

    assert run(steps()) == [str(n).encode() for n in range(500)]


def test_a_script_redis_has_forgotten_is_loaded_again(server: RedisServer) -> None:
    connection = pipe(server.url)

    async def steps() -> list[object]:
        try:
            first = await connection.script(SCRIPT, ["k"], ["v"])
            server.admin().script_flush()
            return [first, await connection.script(SCRIPT, ["k2"], [7])]
        finally:
            await connection.aclose()

    assert run(steps()) == [[b"k", b"v"], [b"k2", b"7"]]


def test_error_replies_raise_redis_py_classes(server: RedisServer) -> None:
    connection = pipe(server.url)

    async def steps() -> list[type[BaseException]]:
        raised = []
        for command in (("NOSUCHCOMMAND",), ("EVALSHA", "0" * 40, 0)):
            with pytest.raises(redis.exceptions.ResponseError) as caught:
                await connection.call(*command)
            raised.append(type(caught.value))
        assert await connection.call("PING") == b"PONG"  # the connection is still good
        await connection.aclose()
        return raised

    assert run(steps()) == [redis.exceptions.ResponseError, redis.exceptions.NoScriptError]


def test_a_wrong_password_is_refused_without_showing_it(server: RedisServer) -> None:
    connection = pipe(server.url.replace(PASSWORD, "wrong-password-9"))
    with pytest.raises(redis.exceptions.AuthenticationError) as caught:
        run(connection.call("PING"))
    assert "wrong-password-9" not in str(caught.value)


def test_a_restarted_redis_fails_the_waiting_commands_then_serves_again() -> None:
    with running_redis() as server:
        connection = pipe(server.url)

        async def steps() -> None:
            assert await connection.call("SET", "k", "v") == b"OK"
            server.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await connection.call("GET", "k")
            server.start()
            assert await connection.call("GET", "k") is None  # a new, empty server
            await connection.aclose()

        run(steps())


@contextlib.asynccontextmanager
async def liar(answer: bytes) -> AsyncIterator[str]:
    """A server on loopback that answers every connection with ``answer`` (maybe nothing)."""

    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1)
        writer.write(answer)
        await writer.drain()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        listening.close()
        await listening.wait_closed()


def test_a_silent_server_times_out_every_waiting_command_and_the_connection_is_dropped() -> None:
    async def steps() -> list[type[BaseException]]:
        async with liar(b"") as url:
            connection = pipe(url, timeout=0.3)
            results = await asyncio.gather(
                *(connection.call("GET", str(n)) for n in range(5)), return_exceptions=True
            )
            assert connection._replies is not None
            assert connection._replies.lost is not None  # later replies could not be matched
            await connection.aclose()
            return [type(result) for result in results]

    raised = run(steps())
    assert redis.exceptions.TimeoutError in raised
    assert all(issubclass(kind, redis.exceptions.RedisError) for kind in raised)


def test_a_server_that_does_not_speak_redis_is_dropped() -> None:
    async def steps() -> None:
        async with liar(b"HTTP/1.1 400 Bad Request\r\n\r\n") as url:
            connection = pipe(url)
            with pytest.raises(redis.exceptions.ConnectionError):
                await connection.call("PING")
            await connection.aclose()

    run(steps())


def test_nothing_listening_is_a_connection_error() -> None:
    with pytest.raises(redis.exceptions.ConnectionError, match="cannot connect"):
        run(pipe("redis://127.0.0.1:1/0").call("PING"))


def test_tls_that_would_not_verify_redis_is_refused() -> None:
    connection = pipe("rediss://127.0.0.1:1/0?ssl_cert_reqs=none")
    with pytest.raises(redis.exceptions.ConnectionError, match="verified"):
        run(connection.call("PING"))
