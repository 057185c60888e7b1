"""Public-key pinning policy, independent of any HTTP library.

A transport hands :meth:`PinPolicy.check` the host name it verified and the
**verified** chain the TLS library built (DER, leaf first, trust anchor
last; :func:`verified_chain` reads it from an ``ssl.SSLSocket``).  Never the
certificates the server merely sent: an attacker can append a pinned
certificate to a chain that does not verify through it (OkHttp's
CVE-2016-2402).

Host patterns follow OkHttp's ``CertificatePinner``: ``sync.example.com``
matches that name only; ``*.example.com`` exactly one more label
(``a.example.com``, not ``example.com`` nor ``a.b.example.com``);
``**.example.com`` any number of labels, none included.  The pins of every
matching pattern are unioned; one match anywhere in the chain passes.

The chain is taken from the TLS library rather than re-verified here, and
SPKI digests are cached by certificate DER, so a handshake costs a dict
lookup per certificate once a server's chain has been seen.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from strongroom.errors import PinMismatchError, TransportError

TYPE_CHECKING = False  # typing, ssl and datetime stay out of the CLI's cold start
if TYPE_CHECKING:
    import datetime
    import ssl

__all__ = [
    "PinFailureReport",
    "PinPolicy",
    "PinSet",
    "host_matches",
    "pattern_error",
    "pin_of_der",
    "unverified_chain",
    "verified_chain",
]

#: Certificates whose SPKI digest is remembered, by DER.
_DIGEST_CACHE_SIZE = 512

#: ``(host, presented, expected)``: told of a mismatch before it is enforced.
PinFailureReport = Callable[[str, Sequence[str], Sequence[str]], None]


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a host pattern, or ``None`` when it is one."""
    labels = pattern.split(".")
    first = labels[0]
    rest = labels[1:] if first in {"*", "**"} else labels
    if not rest or any(not label for label in rest):
        return "a host pattern is a host name, '*.' or '**.' and a host name"
    if any("*" in label for label in rest):
        return "'*' and '**' may only be the first label"
    if pattern != pattern.lower() or not pattern.isascii():
        return "write host patterns in lower case ASCII (IDNA for international names)"
    return None


def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` is covered by ``pattern`` (OkHttp's rules; see the module doc)."""
    host = host.lower().rstrip(".")
    if pattern.startswith("**."):
        suffix = pattern[3:]
        return host == suffix or host.endswith("." + suffix)
    if pattern.startswith("*."):
        suffix = pattern[2:]
        head, dot, tail = host.partition(".")
        return bool(head) and bool(dot) and tail == suffix
    return host == pattern


@functools.lru_cache(maxsize=_DIGEST_CACHE_SIZE)
def _spki_digest_of_der(der: bytes) -> bytes:
    from cryptography import x509

    from strongroom.pins import spki_digest

    return spki_digest(x509.load_der_x509_certificate(der))


def pin_of_der(der: bytes) -> str:
    """The pin (``sha256/...``) of a DER certificate."""
    return "sha256/" + base64.b64encode(_spki_digest_of_der(der)).decode("ascii")


@dataclass(frozen=True)
class PinSet:
    """The pins of one host pattern: ``digests`` are 32-byte SHA-256 values of SPKIs."""

    pattern: str
    digests: frozenset[bytes]
    expires: datetime.date | None = None
    #: After ``expires``: ``"fail"`` refuses the host; ``"allow"`` drops the pins (logged).
    on_expiry: str = "fail"
    report_only: bool = False
    pins: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        encoded = sorted("sha256/" + base64.b64encode(d).decode("ascii") for d in self.digests)
        object.__setattr__(self, "pins", tuple(encoded))


class PinPolicy:
    """Which pins each host must match, and what a mismatch does."""

    def __init__(
        self,
        pin_sets: Sequence[PinSet],
        *,
        report_only: bool = False,
        require_pins: bool = False,
        today: Callable[[], datetime.date] | None = None,
    ) -> None:
        self.pin_sets = tuple(pin_sets)
        self.report_only = report_only
        self.require_pins = require_pins
        self._today = today
        #: How many chains :meth:`check` has looked at (handshakes, for tests).
        self.checks = 0

    def check(
        self, host: str, chain: Sequence[bytes], *, report: PinFailureReport | None = None
    ) -> None:
        """Check ``host``'s verified ``chain`` (DER, leaf first) against its pins.

        On a mismatch ``report(host, presented, expected)`` is called, then,
        unless the matching pins are report-only, :class:`PinMismatchError`
        is raised.

        :raises PinMismatchError: no pin matches; ``host`` has no pins and
            ``require_pins`` is set; or its pins expired and fail closed.
        :raises TransportError: the TLS library gave no verified chain.
        """
        self.checks += 1
        if not chain:
            raise TransportError(f"{host}: the TLS library reported no verified chain; refused")
        sets = [pin_set for pin_set in self.pin_sets if host_matches(pin_set.pattern, host)]
        if not sets:
            if self.require_pins:
                raise PinMismatchError(f"{host}: no pin set matches this host (require_pins)")
            return
        sets = self._unexpired(host, sets)
        if not sets:
            return
        wanted = frozenset().union(*(pin_set.digests for pin_set in sets))
        digests = [_spki_digest_of_der(der) for der in chain]
        if not wanted.isdisjoint(digests):
            return
        presented = [pin_of_der(der) for der in chain]
        expected = sorted({pin for pin_set in sets for pin in pin_set.pins})
        if report is not None:
            report(host, presented, expected)
        if self.report_only or all(pin_set.report_only for pin_set in sets):
            return
        raise PinMismatchError(
            f"{host}: pin mismatch: the verified chain presented {', '.join(presented)};"
            f" none is pinned for this host"
        )

    def _unexpired(self, host: str, sets: list[PinSet]) -> list[PinSet]:
        """``sets`` without the expired ones; an expired set that fails closed raises."""
        if all(pin_set.expires is None for pin_set in sets):
            return sets
        import datetime

        today = self._today() if self._today is not None else datetime.date.today()
        kept = []
        for pin_set in sets:
            if pin_set.expires is None or today <= pin_set.expires:
                kept.append(pin_set)
            elif pin_set.on_expiry == "allow":
                import logging

                logging.getLogger(__name__).warning(
                    "pins for %s (%s) expired on %s; only chain verification applies",
                    host,
                    pin_set.pattern,
                    pin_set.expires.isoformat(),
                )
            else:
                raise PinMismatchError(
                    f"{host}: the pins for {pin_set.pattern} expired on"
                    f" {pin_set.expires.isoformat()}; refused (renew them, or set"
                    f' on_expiry = "allow" to fall back to chain verification)'
                )
        return kept


def verified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The chain OpenSSL verified for ``tls`` (DER, leaf first, the trust anchor last).

    ``get_verified_chain()`` is public from Python 3.13; on 3.11 and 3.12 it
    exists privately on ``tls._sslobj`` (CPython 3.10+).  Empty on a resumed
    session.

    :raises TransportError: this Python offers neither.
    """
    public = getattr(tls, "get_verified_chain", None)
    if public is not None:
        return list(public())
    return _private_chain(tls, "get_verified_chain")


def unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent (DER), in its order; trust nothing in it."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return list(public())
    return _private_chain(tls, "get_unverified_chain")


def _private_chain(tls: ssl.SSLSocket, name: str) -> list[bytes]:
    import _ssl

    method = getattr(getattr(tls, "_sslobj", None), name, None)
    if method is None:
        raise TransportError("this Python cannot report the verified TLS chain")
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in method() or ()]
