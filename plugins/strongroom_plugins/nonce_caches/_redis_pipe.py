"""One pipelined Redis connection per event loop: what the ``redis`` backend's awaited steps use.

redis-py's asyncio client takes a connection from a pool for each command,
wraps it in a retry policy and parses the reply through several layers:
about 45 µs of CPU per command on this project's benchmark machine, and a
sync server is bound by one interpreter's CPU, so two commands per request
were most of what the defence cost.  Here each command is written at once
on the loop's one connection and its reply matched in order (Redis
answers a connection's commands in the order they were sent), parsed by
hiredis, Redis' own C parser: about 8 µs.  The URL is read by redis-py's
own parser, so both clients connect alike; errors are redis-py's
exception classes, so the backend maps them to the slot's errors in one
place.

A command that times out, or a connection that breaks, fails every command
waiting on it and closes the connection (later replies could no longer be
matched); the next command connects again.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import ssl
from typing import Any

import hiredis
import redis
import redis.exceptions
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

__all__ = ["RedisPipe"]

Arg = str | bytes | int | float


class RedisPipe:
    """Commands of one event loop, pipelined on one connection to the Redis at ``url``."""

    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._replies: _Replies | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *args: Arg) -> Any:
        """The reply to one command.

        :raises redis.RedisError: no connection, a timeout, or an error reply.
        """
        replies = self._replies
        if replies is None or replies.lost is not None:
            replies = await self._connect()
        return await self._answer(replies, replies.send(args))

    async def script(self, source: str, keys: list[str], args: list[Arg]) -> Any:
        """Run a Lua script by its SHA-1, loading it first where Redis has not got it."""
        sha = _sha1(source)
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await self.call("SCRIPT", "LOAD", source)
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Close the connection and wait until the loop has let go of its socket."""
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.close()
            await replies.gone.wait()

    async def _answer(self, replies: _Replies, waiter: asyncio.Future[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await waiter
        except TimeoutError:
            replies.close()  # the replies still due could no longer be matched
            raise redis.exceptions.TimeoutError(f"no reply within {self._timeout:g} s") from None
        if isinstance(reply, hiredis.ReplyError):
            raise _error(str(reply))
        return reply

    async def _connect(self) -> _Replies:
        async with self._connecting:
            replies = self._replies
            if replies is not None and replies.lost is None:
                return replies
            try:
                async with asyncio.timeout(self._connect_timeout):
                    replies = await self._open()
                    try:
                        await self._hello(replies)
                    except BaseException:
                        replies.close()
                        raise
            except TimeoutError:
                raise redis.exceptions.TimeoutError(
                    f"no connection within {self._connect_timeout:g} s"
                ) from None
            except OSError as exc:
                raise redis.exceptions.ConnectionError(
                    f"cannot connect: {exc.strerror or exc}"
                ) from None
            self._replies = replies
            return replies

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        options = self._options
        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            _, replies = await loop.create_unix_connection(_Replies, options["path"])
            return replies
        context = _tls_context(options) if kind is SSLConnection else None
        host, port = options.get("host", "localhost"), int(options.get("port", 6379))
        _, replies = await loop.create_connection(
            _Replies, host, port, ssl=context, server_hostname=host if context else None
        )
        return replies

    async def _hello(self, replies: _Replies) -> None:
        """Authenticate and select the database, as redis-py does on connecting."""
        options = self._options
        password, username = options.get("password"), options.get("username")
        if password:
            login = (username, password) if username else (password,)
            await self._answer(replies, replies.send(("AUTH", *login)))
        if int(options.get("db", 0)):
            await self._answer(replies, replies.send(("SELECT", int(options["db"]))))


class _Replies(asyncio.Protocol):
    """The connection: commands written as they come, replies handed out in order."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self.lost: redis.exceptions.ConnectionError | None = None
        #: Set once the loop has closed the socket.
        self.gone = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream's is a Transport

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        if self.lost is not None or self._transport is None:
            raise self.lost or redis.exceptions.ConnectionError("not connected")
        waiter = asyncio.get_running_loop().create_future()
        self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]  # stub: 1-tuple
        self._waiting.append(waiter)
        return waiter

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = self._waiting.popleft()
                if not waiter.done():  # a caller that timed out has gone
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError):
            self.close()  # not Redis speaking, or a reply nobody asked for

    def connection_lost(self, exc: Exception | None) -> None:
        cause = f": {exc}" if exc is not None else ""
        self._fail(redis.exceptions.ConnectionError(f"connection lost{cause}"))
        self.gone.set()

    def close(self) -> None:
        self._fail(redis.exceptions.ConnectionError("connection closed"))
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: redis.exceptions.ConnectionError) -> None:
        if self.lost is None:
            self.lost = error
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)


def _error(text: str) -> redis.exceptions.RedisError:
    """redis-py's exception class for an error reply, by its code."""
    code = text.split(" ", 1)[0]
    kind = {
        "NOSCRIPT": redis.exceptions.NoScriptError,
        "OOM": redis.exceptions.OutOfMemoryError,
        "NOPERM": redis.exceptions.NoPermissionError,
        "WRONGPASS": redis.exceptions.AuthenticationError,
        "NOAUTH": redis.exceptions.AuthenticationError,
    }.get(code, redis.exceptions.ResponseError)
    return kind(text)


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """Verified TLS, as for redis-py: a CA file if the URL names one, else the system store.

    :raises redis.exceptions.ConnectionError: the URL asks not to verify Redis' certificate.
    """
    if str(options.get("ssl_cert_reqs", "required")).lower() not in ("required", "2"):
        raise redis.exceptions.ConnectionError(
            "rediss:// with ssl_cert_reqs other than required: Redis' certificate is verified"
        )
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    if str(options.get("ssl_check_hostname", "true")).lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context


@functools.cache  # a handful of scripts, hashed once rather than on every request
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
