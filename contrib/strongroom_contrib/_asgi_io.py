"""ASGI plumbing for :mod:`strongroom_contrib.asgi`: bounded bodies, buffered responses, threads.

Kept apart so the middleware reads as its policy.  Nothing here imports a
web framework; a blocking call goes to this module's worker threads on an
asyncio loop, to anyio's on any other (trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
T = TypeVar("T")

__all__ = ["Response", "TooLarge", "capture", "in_thread", "read_body", "replaying", "respond"]


class TooLarge(Exception):
    """A body over its limit."""


@dataclass(frozen=True, slots=True)
class Response:
    """A whole response: status, header pairs (``str``), body."""

    status: int
    headers: Iterable[tuple[str, str]]
    body: bytes

    def __repr__(self) -> str:  # a body is a payload: never in a log line
        return f"Response({self.status}, {len(self.body)} B)"


async def in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking ``call`` off the event loop, in a copy of the caller's context."""
    bound = functools.partial(contextvars.copy_context().run, call, *args, **kwargs)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): anyio knows its threads
        import anyio.to_thread

        return await anyio.to_thread.run_sync(bound)
    future: asyncio.Future[T] = loop.create_future()
    _WORKERS.submit(loop, future, bound)
    return await future


class _Workers:
    """The middleware's worker threads: one queue, and a future settled from the thread.

    A busy server hands a request to a thread once or twice, and anyio's
    ``to_thread.run_sync`` (cancel scopes, a capacity limiter, run vars)
    costs about twice the CPU of this (70-90 against 40 µs a call, measured).
    A thread is started when no idle one is left, up to ``limit``; beyond
    that calls wait in the queue, as they would for anyio's limiter.  A
    forked child starts afresh: the parent's threads are not in it.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0

    def submit(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], call: Callable[[], Any]
    ) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread is this call's
            elif self._started < self._limit:
                self._started += 1
                threading.Thread(target=self._work, name="strongroom-asgi", daemon=True).start()
        self._calls.put((loop, future, call))

    def _work(self) -> None:
        while True:
            loop, future, call = self._calls.get()
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except StopIteration:  # a future cannot hold it
                outcome = (None, RuntimeError("a worker-thread call raised StopIteration"))
            except BaseException as exc:  # the awaiting task raises it
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del loop, future, call, outcome  # hold nothing of a request while idle
            with self._lock:
                self._idle += 1


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]
#: Enough for a storage a few milliseconds away: a thread that waits on the network costs
#: nothing, and threads start only when none is idle (on the benchmark, 2 to 40 served alike).
_WORKERS = _Workers(limit=32)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """The whole request body; ``headers`` are the scope's.

    :raises TooLarge: its ``Content-Length`` or its bytes exceed ``limit``.
    """
    for name, value in headers:
        if name.lower() == b"content-length" and value.strip().isdigit() and int(value) > limit:
            raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the application the body read, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def capture(
    app: App, scope: MutableMapping[str, Any], receive: Receive, limit: int
) -> Response:
    """Run ``app`` and collect its response.

    :raises TooLarge: the body exceeds ``limit``.
    :raises RuntimeError: the application returned without starting a response.
    """
    start: Message | None = None
    chunks: list[bytes] = []
    size = 0

    async def collect(message: Message) -> None:
        nonlocal start, size
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)

    await app(scope, receive, collect)
    if start is None:
        raise RuntimeError("the application returned without a response")
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in start.get("headers", [])
    ]
    return Response(int(start["status"]), headers, b"".join(chunks))


async def respond(send: Send, response: Response) -> None:
    """Send ``response`` whole, with its ``Content-Length`` set from the body."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
        if name.lower() != "content-length"
    ]
    headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
