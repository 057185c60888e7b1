"""uvicorn's h11 protocol with Nagle's algorithm off on every connection it serves.

asyncio turns ``TCP_NODELAY`` on only for connections accepted from a
socket made with protocol ``IPPROTO_TCP``.  uvicorn's own listening socket
for ``--workers`` has protocol 0 (uvicorn issue 3149), so each keep-alive
response after the first waited for the client's delayed ACK: about 40 ms
a request with two workers, against 2 ms with one.  Setting the option on
each connection works whoever made the listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["NoDelayH11Protocol", "set_nodelay"]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on ``transport``'s TCP socket, if it has one."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """:class:`H11Protocol` that sets ``TCP_NODELAY`` when a connection is made."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
