"""The server's connections have Nagle's algorithm off, whatever made the listening socket.

uvicorn's ``--workers`` socket has protocol 0, so asyncio leaves ``TCP_NODELAY``
off and keep-alive answers wait for delayed ACKs (``_nodelay``'s docstring).
"""

from __future__ import annotations

import asyncio
import socket

from strongroom_contrib.server._nodelay import set_nodelay


def test_a_connection_accepted_from_a_protocol_0_socket_gets_nodelay() -> None:
    async def accepted_option() -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # protocol 0, as uvicorn's
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        seen: list[int] = []

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                before = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                set_nodelay(transport)
                seen.extend([before, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)])
                transport.close()

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()
        assert seen[0] == 0  # the case the fix is for: asyncio left Nagle on
        return seen[1]

    assert asyncio.run(accepted_option()) != 0
