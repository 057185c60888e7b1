"""Real TLS servers on loopback for transport tests: a trustme PKI, uvicorn, a recording server.

API (everything binds ``127.0.0.1`` on a free port and stops when the ``with`` ends):

``make_pki(directory) -> Pki``
    A root CA, an intermediate under it and a leaf for ``127.0.0.1`` and
    ``localhost`` signed by the intermediate, written as PEM files:
    ``pki.server.cert_chain`` (leaf then intermediate, what a server sends),
    ``pki.server.key``, ``pki.ca_bundle`` (the root only), and the SPKI pins
    ``root_pin``, ``intermediate_pin``, ``leaf_pin``.  ``pki.issue(stem, *names,
    not_after=..., signer=..., extra_pems=...)`` writes another server
    certificate (expired, wrong name, from another CA, with unrelated
    certificates appended to the chain it sends).

``serve_asgi(app, cert) -> Iterator[str]``
    Serves the ASGI ``app`` with uvicorn over TLS with ``cert`` (a
    :class:`ServerCert`) in a background thread; yields the base URL
    ``https://127.0.0.1:PORT``.

``serve_recording(cert, respond=None, configure=None) -> Iterator[Recording]``
    A plain ``ssl`` + ``socket`` server that records every application byte
    it receives after each handshake, to prove a client sent nothing.  With
    ``respond``, each complete HTTP/1.1 request (headers and a
    ``Content-Length`` body) is passed to ``respond(request) -> bytes | None``
    and its bytes are sent back on the same connection (keep-alive); ``None``
    drops the connection without answering.  ``configure(context)`` adjusts the
    server's ``ssl.SSLContext`` (e.g. to serve only TLS 1.2).
    ``http_response(status, body, headers)`` builds a response.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509

from strongroom.pins import spki_pin

__all__ = [
    "Pki",
    "Recording",
    "ServerCert",
    "http_response",
    "make_pki",
    "pem_pin",
    "self_signed",
    "serve_asgi",
    "serve_recording",
]

_START_TIMEOUT_S = 10.0


def pem_pin(pem: bytes) -> str:
    """The SPKI pin of the first certificate in ``pem``."""
    return spki_pin(x509.load_pem_x509_certificate(pem))


@dataclass(frozen=True)
class ServerCert:
    """What a server presents: its chain file (leaf first) and the leaf's key."""

    cert_chain: Path
    key: Path
    #: The leaf's pin.
    pin: str


@dataclass(frozen=True)
class Pki:
    """A root -> intermediate -> leaf hierarchy on disk."""

    directory: Path
    root: trustme.CA
    intermediate: trustme.CA
    server: ServerCert
    #: The root certificate only: what a client passes as ``ca_bundle``.
    ca_bundle: Path
    root_pin: str
    intermediate_pin: str
    leaf_pin: str

    def issue(
        self,
        stem: str,
        *names: str,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        signer: trustme.CA | None = None,
        extra_pems: Sequence[bytes] = (),
    ) -> ServerCert:
        """Write a leaf for ``names`` (default 127.0.0.1, localhost) signed by ``signer``.

        The chain file holds the leaf, its signer's chain up to (not
        including) a self-signed root, then ``extra_pems`` verbatim.
        """
        signer = signer if signer is not None else self.intermediate
        leaf = signer.issue_cert(
            *(names or ("127.0.0.1", "localhost")), not_before=not_before, not_after=not_after
        )
        return _write_server(self.directory, stem, leaf, extra_pems)


def _write_server(
    directory: Path, stem: str, leaf: trustme.LeafCert, extra_pems: Sequence[bytes] = ()
) -> ServerCert:
    pems = [blob.bytes() for blob in leaf.cert_chain_pems]
    chain = [pems[0]] + [pem for pem in pems[1:] if not _self_signed(pem)] + list(extra_pems)
    cert_chain = directory / f"{stem}-chain.pem"
    key = directory / f"{stem}-key.pem"
    cert_chain.write_bytes(b"".join(chain))
    leaf.private_key_pem.write_to_path(str(key))
    return ServerCert(cert_chain=cert_chain, key=key, pin=pem_pin(pems[0]))


def _self_signed(pem: bytes) -> bool:
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate.subject == certificate.issuer


def self_signed(directory: Path, stem: str = "self-signed") -> ServerCert:
    """A self-signed (non-CA) certificate for ``127.0.0.1`` and ``localhost``."""
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / f"{stem}-chain.pem").write_bytes(pem)
    (directory / f"{stem}-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServerCert(directory / f"{stem}-chain.pem", directory / f"{stem}-key.pem", pem_pin(pem))


def make_pki(directory: Path, *, organization: str = "Strongroom Test") -> Pki:
    """A fresh root, intermediate and ``127.0.0.1``/``localhost`` leaf under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    root = trustme.CA(organization_name=f"{organization} Root")
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", "localhost")
    ca_bundle = directory / "ca.pem"
    root.cert_pem.write_to_path(str(ca_bundle))
    server = _write_server(directory, "server", leaf)
    return Pki(
        directory=directory,
        root=root,
        intermediate=intermediate,
        server=server,
        ca_bundle=ca_bundle,
        root_pin=pem_pin(root.cert_pem.bytes()),
        intermediate_pin=pem_pin(intermediate.cert_pem.bytes()),
        leaf_pin=server.pin,
    )


@contextlib.contextmanager
def serve_asgi(app: Any, cert: ServerCert) -> Iterator[str]:
    """Serve ``app`` with uvicorn over TLS on loopback; yields ``https://127.0.0.1:PORT``."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        ssl_certfile=str(cert.cert_chain),
        ssl_keyfile=str(cert.key),
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(_START_TIMEOUT_S)
        listener.close()


def http_response(
    status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """An HTTP/1.1 response with a ``Content-Length``."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Recording:
    """What a recording server saw.  Read it after the client is done."""

    url: str
    #: TCP connections accepted.
    accepted: int = 0
    #: TLS handshakes completed (server side).
    handshakes: int = 0
    #: Application bytes received, one entry per completed handshake.
    received: list[bytes] = field(default_factory=list)
    #: Complete HTTP requests received (raw bytes), in order.
    requests: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def application_bytes(self) -> int:
        """Every application byte any client sent after a handshake."""
        with self.lock:
            return sum(len(data) for data in self.received)


@contextlib.contextmanager
def serve_recording(
    cert: ServerCert,
    respond: Callable[[bytes], bytes | None] | None = None,
    configure: Callable[[ssl.SSLContext], None] | None = None,
) -> Iterator[Recording]:
    """A TLS server recording each byte received after the handshake; see the module doc."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert.cert_chain), str(cert.key))
    if configure is not None:
        configure(context)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    recording = Recording(url=f"https://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def handle(connection: socket.socket) -> None:
        connection.settimeout(0.2)
        with contextlib.suppress(OSError), connection:
            tls = _handshake(context, connection, stop)
            if tls is None:
                return
            index = _record_handshake(recording)
            with tls:
                _serve_connection(tls, recording, index, respond, stop)

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with recording.lock:
                recording.accepted += 1
            worker = threading.Thread(target=handle, args=(connection,), daemon=True)
            workers.append(worker)
            worker.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield recording
    finally:
        stop.set()
        acceptor.join(_START_TIMEOUT_S)
        for worker in workers:
            worker.join(_START_TIMEOUT_S)
        listener.close()


def _handshake(
    context: ssl.SSLContext, connection: socket.socket, stop: threading.Event
) -> ssl.SSLSocket | None:
    tls = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
    while not stop.is_set():
        try:
            tls.do_handshake()
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ssl.SSLError, OSError):
            break
        return tls
    tls.close()
    return None


def _record_handshake(recording: Recording) -> int:
    with recording.lock:
        recording.handshakes += 1
        recording.received.append(b"")
        return len(recording.received) - 1


def _serve_connection(
    tls: ssl.SSLSocket,
    recording: Recording,
    index: int,
    respond: Callable[[bytes], bytes | None] | None,
    stop: threading.Event,
) -> None:
    buffer = b""
    while not stop.is_set():
        try:
            data = tls.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        if not data:
            return
        with recording.lock:
            recording.received[index] += data
        if respond is None:
            continue
        buffer += data
        while (request := _complete_request(buffer)) is not None:
            buffer = buffer[len(request) :]
            with recording.lock:
                recording.requests.append(request)
            answer = respond(request)
            if answer is None:
                return
            tls.sendall(answer)


def _complete_request(buffer: bytes) -> bytes | None:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    total = end + 4 + length
    return buffer[:total] if len(buffer) >= total else None
