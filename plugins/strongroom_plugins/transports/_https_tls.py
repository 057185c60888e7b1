"""The ``https`` transport's TLS: a verifying context whose sockets check pins in the handshake.

The pin check runs inside ``do_handshake``, after OpenSSL has verified the
chain and the host name and before the socket is handed to the HTTP
library, so a refused server never receives a request byte.  It reads the
chain OpenSSL verified (:func:`strongroom.pinning.verified_chain`), never
the list the server sent, and raises :class:`strongroom.errors.PinMismatchError`
itself: that is not an ``OSError``, so httpcore and httpx let it through
unchanged instead of turning it into a generic connection error.  A reused
connection does not handshake again, so it costs nothing per request.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from strongroom.errors import ConfigError
from strongroom.pinning import verified_chain

__all__ = ["describe_failure", "pinning_context"]

#: ``check(host, verified_chain_der)``: raises to refuse the server.
ChainCheck = Callable[[str, list[bytes]], None]


class _PinnedSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that refuses the connection when its pin check raises."""

    _check: ChainCheck

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            type(self)._check(self.server_hostname or "", verified_chain(self))
        except BaseException:
            self.close()
            raise


def pinning_context(ca_bundle: str, min_tls: str, check: ChainCheck) -> ssl.SSLContext:
    """A client context: CERT_REQUIRED, host names checked, TLS ``min_tls`` or newer.

    Trusts the system store, or only the CAs of ``ca_bundle`` when it is set.

    :raises ConfigError: ``ca_bundle`` cannot be read or holds no certificate.
    """
    try:
        context = ssl.create_default_context(cafile=ca_bundle or None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "unreadable"
        raise ConfigError(
            f"ca_bundle {ca_bundle}: {reason}", location="[transport] key 'ca_bundle'"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if min_tls == "1.3" else ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.sslsocket_class = type(
        "PinnedSocket", (_PinnedSocket,), {"_check": staticmethod(check)}
    )
    return context


def describe_failure(error: BaseException, min_tls: str) -> tuple[str, bool]:
    """A one-line reason for a failed connection, and whether retrying may help.

    Looks through the exception's causes for what ``ssl`` and ``socket``
    raised; a certificate or TLS failure is never worth retrying.
    """
    cause: BaseException | None = error
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not verified: {cause.verify_message or cause.reason}", False
        if isinstance(cause, ssl.SSLError):
            reason = str(cause.reason or type(cause).__name__)
            if "VERSION" in reason or "PROTOCOL" in reason:
                return f"TLS version refused ({reason}); TLS {min_tls} or newer is required", False
            return f"TLS handshake failed: {reason}", False
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(cause, OSError) and cause.strerror:
            return f"connection failed: {cause.strerror}", True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return f"connection failed: {type(error).__name__}", True
