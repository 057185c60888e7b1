"""ASGI plumbing for :mod:`strongroom_contrib.asgi`: bounded bodies, buffered responses, threads.

Kept apart so the middleware reads as its policy.  Nothing here imports a
web framework; a blocking call goes to anyio's worker threads when anyio
runs the loop (Starlette, FastAPI), else to asyncio's.
"""

from __future__ import annotations

import asyncio
import functools
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
    """Run a blocking ``call`` off the event loop."""
    bound = functools.partial(call, *args, **kwargs)
    try:
        import anyio.to_thread
    except ImportError:  # pragma: no cover - every supported server installs anyio
        return await asyncio.to_thread(bound)
    return await anyio.to_thread.run_sync(bound)


async def read_body(receive: Receive, headers: list[tuple[str, str]], limit: int) -> bytes:
    """The whole request body.

    :raises TooLarge: its ``Content-Length`` or its bytes exceed ``limit``.
    """
    for name, value in headers:
        if name.lower() == "content-length" and value.strip().isdigit() and int(value) > limit:
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
