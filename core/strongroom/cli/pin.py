"""``strongroom pin``: print the SPKI pin of every certificate in a server's chain.

``strongroom pin HOST[:PORT]`` (port 443 by default, an IPv6 address in
brackets: ``[::1]:8443``) connects with TLS 1.2 or later, verifies the
chain and the host name against the system trust store, or only against
``--ca-bundle FILE`` for a private CA, and prints the **verified** chain:
one line per certificate, its position (leaf / intermediate / root), its
pin and its subject.  ``strongroom pin --cert FILE`` reads a PEM file of one
or more certificates instead.  A server that does not verify prints nothing:
there is no switch to accept any certificate (pin such a server from its
certificate file with ``--cert``).

**Getting the verified chain on Python 3.11.**  ``SSLSocket.get_verified_chain()``
is public from Python 3.13 and used there.  On 3.11 and 3.12 the same
method exists, privately, on the ``_ssl._SSLSocket`` object behind
``SSLSocket._sslobj`` (CPython added it in 3.10 and made it public in 3.13);
its items are ``_ssl.Certificate`` objects, turned into DER with
``public_bytes(_ssl.ENCODING_DER)``.  It is OpenSSL's
``SSL_get0_verified_chain``: leaf first, the trust anchor last, taken from
the store when the server did not send it.  Each session here is fresh (no
resumption, where the chain would be empty).  Should neither method exist,
the command fails rather than print a partial chain.  The extraction
is :func:`strongroom.pinning.verified_chain`, shared with the ``https``
transport.  The chain the server sent (``get_unverified_chain``, the same
way) only says whether each certificate was sent or came from the trust
store.  ``tests/core/test_cli_pin.py``
checks this against a real TLS server and ``openssl``.

Position is read from the certificate, not its place: a certificate that
is not a CA is a ``leaf``; a CA whose subject is its issuer is a ``root``;
any other CA is an ``intermediate``.

Exit codes: 1 (``TransportError``) when the server cannot be reached or its
certificate does not verify: connection refused, timed out (``--timeout``,
10 s by default), a name that does not resolve, a TLS failure, an untrusted
chain, a host name mismatch; 2 (``UsageError``) for bad arguments and for a
``--cert`` or ``--ca-bundle`` file that is missing, a directory, unreadable
or holds no PEM certificate.
"""

from __future__ import annotations

from strongroom.cli._output import emit, printable
from strongroom.errors import TransportError, UsageError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    import argparse
    import ssl

    from cryptography import x509

DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 10.0
_MAX_PEM_BYTES = 16 * 1024 * 1024


def run(args: argparse.Namespace) -> int:
    if args.cert is not None:
        if args.target is not None or args.ca_bundle is not None:
            raise UsageError("give HOST[:PORT] or --cert FILE, not both; --ca-bundle needs HOST")
        chain = [(certificate, "file") for certificate in _read_pem(args.cert, "--cert")]
    elif args.target is None:
        raise UsageError("give HOST[:PORT] or --cert FILE (see 'strongroom pin --help')")
    else:
        if not 0 < args.timeout <= 3600:  # also refuses nan and inf
            raise UsageError(f"--timeout must be from 0 to 3600 seconds, not {args.timeout}")
        host, port = parse_target(args.target)
        chain = fetch_chain(host, port, ca_bundle=args.ca_bundle, timeout=args.timeout)
    _print(args, chain)
    return 0


def parse_target(target: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` as ``(host, port)``.

    :raises UsageError: a URL, an empty host, a bad port, an IPv6 address
        without brackets.
    """
    if "://" in target or "/" in target:
        raise UsageError(f"{target!r}: give HOST[:PORT], not a URL")
    port_text = ""
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"{target!r}: an IPv6 address goes in brackets: [::1]:8443")
        port_text = rest[1:] if rest else ""
        has_port = bool(rest)
    elif target.count(":") > 1:
        raise UsageError(f"{target!r}: an IPv6 address goes in brackets: [{target}]:443")
    else:
        host, colon, port_text = target.partition(":")
        has_port = bool(colon)
    if not host or not host.isprintable() or any(c.isspace() for c in host):
        raise UsageError(f"{target!r}: no host name")
    if not has_port:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise UsageError(f"{target!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def fetch_chain(
    host: str, port: int, *, ca_bundle: str | None, timeout: float
) -> list[tuple[x509.Certificate, str]]:
    """The verified chain of ``host:port``, leaf first, each with where it came from.

    :raises TransportError: the server cannot be reached or does not verify.
    :raises UsageError: ``ca_bundle`` cannot be read or holds no certificate.
    """
    import socket
    import ssl

    context = _context(ca_bundle)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            verified, sent = _chains(tls)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "not verified"
        raise TransportError(f"{where}: certificate not verified: {reason}") from None
    except ssl.SSLError as exc:
        raise TransportError(f"{where}: TLS handshake failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise TransportError(f"{where}: timed out after {timeout:g} s") from None
    except socket.gaierror as exc:
        raise TransportError(f"{where}: host name not resolved: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise TransportError(f"{where}: connection refused") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TransportError(f"{where}: connection failed: {reason}") from None
    from cryptography import x509

    return [
        (x509.load_der_x509_certificate(der), "server" if der in sent else "trust store")
        for der in verified
    ]


def _context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or only ``ca_bundle``'s CAs."""
    import ssl

    cadata = None
    if ca_bundle is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        certificates = _read_pem(ca_bundle, "--ca-bundle")
        cadata = "".join(cert.public_bytes(Encoding.PEM).decode("ascii") for cert in certificates)
    context = ssl.create_default_context(cadata=cadata)  # CERT_REQUIRED, host name checked
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _chains(tls: ssl.SSLSocket) -> tuple[list[bytes], set[bytes]]:
    """The verified chain (DER, leaf first) and the set of certificates the server sent."""
    from strongroom.pinning import unverified_chain, verified_chain

    verified = verified_chain(tls)  # shared with the https transport's pin check
    if not verified:
        raise TransportError("the TLS library reported an empty verified chain")
    return verified, set(unverified_chain(tls))


def _read_pem(path: str, option: str) -> list[x509.Certificate]:
    """Every certificate of the PEM file ``path``, in file order.

    :raises UsageError: missing, a directory, unreadable, too large, or no
        PEM certificate in it.
    """
    from cryptography import x509

    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{option} {path}: {reason}") from None
    if len(data) > _MAX_PEM_BYTES:
        raise UsageError(f"{option} {path}: larger than a certificate file can be")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UsageError(f"{option} {path}: no PEM certificate in it, or a malformed one") from None
    return certificates


def position(certificate: x509.Certificate) -> str:
    """``leaf``, ``intermediate`` or ``root``, from the certificate itself."""
    from cryptography import x509

    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return "leaf"
    return "root" if certificate.subject == certificate.issuer else "intermediate"


def _print(args: argparse.Namespace, chain: list[tuple[x509.Certificate, str]]) -> None:
    from strongroom.pins import spki_pin

    entries = [
        {
            "position": position(certificate),
            "subject": certificate.subject.rfc4514_string(),
            "pin": spki_pin(certificate),
            "from": origin,
        }
        for certificate, origin in chain
    ]
    lines = []
    for entry in entries:
        note = (
            "  (not sent by the server: from the trust store)"
            if entry["from"] == "trust store"
            else ""
        )
        lines.append(
            f"{entry['position']:<12}  {entry['pin']}  {printable(entry['subject'])}{note}"
        )
    emit(args, entries, lines)
