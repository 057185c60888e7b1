"""The ``Transport`` slot: sends a sync request and returns the response.

A transport moves bytes and enforces the channel's security (for https:
TLS 1.2 or later and public-key pinning).  Request signing and response
checks sit above it, in hooks, so every transport gets them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from strongroom.audit import AuditEvent
from strongroom.backend import Backend, S_co

__all__ = ["SyncRequest", "SyncResponse", "Transport", "TransportBinding", "is_repeatable"]


def _ignore_pin_failure(host: str, presented: Sequence[str], expected: Sequence[str]) -> None:
    """No one listens: a transport built outside a stack."""


def _ignore_audit(event: AuditEvent) -> None:
    """No one listens: a transport built outside a stack."""


@dataclass(frozen=True)
class TransportBinding:
    """What a transport reports to the stack that built it; no-ops by default.

    ``pin_failure(host, presented, expected)`` fires the ``strongroom_pin_failure``
    hook (pins as ``sha256/...`` strings); ``audit`` takes an audit event
    for ``account``.  Neither may raise into the transport: the stack logs
    a listener that fails.
    """

    account: str = ""
    pin_failure: Callable[[str, Sequence[str], Sequence[str]], None] = _ignore_pin_failure
    audit: Callable[[AuditEvent], None] = _ignore_audit


@dataclass(frozen=True)
class SyncRequest:
    """One request to the sync server.  ``path`` is relative to the server's base URL."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # bodies, headers and queries may carry payloads or tokens
        path, query, _ = self.path.partition("?")
        return f"SyncRequest({self.method} {path}{'?...' if query else ''}, {len(self.body)} bytes)"


#: Methods that do the same when run twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def is_repeatable(request: SyncRequest) -> bool:
    """Whether sending ``request`` twice is harmless: an idempotent method, or a POST
    carrying an ``Idempotency-Key`` (the server answers a repeat with its first outcome).

    The one rule for a transport's retries and for re-signing after a lost answer.
    """
    method = request.method.upper()
    if method in _IDEMPOTENT:
        return True
    return method == "POST" and any(name.lower() == "idempotency-key" for name in request.headers)


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

    def __init__(
        self, settings: S_co | None = None, *, binding: TransportBinding | None = None
    ) -> None:
        super().__init__(settings)
        self.binding = binding if binding is not None else TransportBinding()

    @abstractmethod
    def send(self, request: SyncRequest) -> SyncResponse:
        """Send ``request`` and return the response, whatever its status.

        :raises strongroom.errors.PinMismatchError: the server's key is not pinned.
        :raises strongroom.errors.TransportError: the connection failed or was not
            secure enough; nothing was sent in the clear.
        """
