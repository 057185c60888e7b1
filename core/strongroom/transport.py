"""The ``Transport`` slot: sends a sync request and returns the response.

A transport moves bytes and enforces the channel's security (for https:
TLS 1.2 or later and public-key pinning).  Request signing and response
checks sit above it, in hooks, so every transport gets them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from strongroom.backend import Backend, S_co

__all__ = ["SyncRequest", "SyncResponse", "Transport"]


@dataclass(frozen=True)
class SyncRequest:
    """One request to the sync server.  ``path`` is relative to the server's base URL."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # bodies and headers may carry payloads or tokens
        return f"SyncRequest({self.method} {self.path}, {len(self.body)} bytes)"


@dataclass(frozen=True)
class SyncResponse:
    """The server's answer."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SyncResponse({self.status}, {len(self.body)} bytes)"


class Transport(Backend[S_co], ABC):
    """Carries sync requests to the server."""

    @abstractmethod
    def send(self, request: SyncRequest) -> SyncResponse:
        """Send ``request`` and return the response, whatever its status.

        :raises strongroom.errors.PinMismatchError: the server's key is not pinned.
        :raises strongroom.errors.TransportError: the connection failed or was not
            secure enough; nothing was sent in the clear.
        """
