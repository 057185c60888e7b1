"""``strongroom pin`` against a real TLS server on loopback, and on PEM files.

The server runs in a thread with a trustme chain (root -> intermediate ->
leaf); it sends the leaf and the intermediate, as servers do, so the root
comes from ``--ca-bundle``.  Every pin printed is checked against openssl.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from test_cli import assert_one_line_error, cli
from test_pins import openssl_pin

from strongroom.cli.pin import parse_target
from strongroom.errors import UsageError


@contextlib.contextmanager
def tls_server(
    cert: trustme.LeafCert | None, host: str = "127.0.0.1", family: int = socket.AF_INET
) -> Iterator[int]:
    """Serve TLS handshakes with ``cert`` on ``host``; with None, accept and never answer."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert is not None:
        cert.configure_cert(context)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            if cert is None:  # hold it open, silent, until the test ends
                stop.wait()
                connection.close()
                return
            connection.settimeout(5)
            with (
                contextlib.suppress(OSError),
                connection,
                context.wrap_socket(connection, server_side=True) as tls,
            ):
                tls.recv(1)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    root = trustme.CA(organization_name="Pin Test Root")
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", "localhost")
    leaf_pem = leaf.cert_chain_pems[0].bytes()
    chain = [leaf_pem, intermediate.cert_pem.bytes(), root.cert_pem.bytes()]
    root.cert_pem.write_to_path(str(directory / "ca.pem"))
    (directory / "chain.pem").write_bytes(b"".join(chain))
    (directory / "leaf.pem").write_bytes(leaf_pem)
    return {
        "root": root,
        "leaf": leaf,
        "other": intermediate.issue_cert("other.example"),
        "chain": chain,
        "pins": [openssl_pin(pem) for pem in chain],
        "dir": directory,
    }


@pytest.fixture(scope="module")
def server(pki: dict[str, object]) -> Iterator[int]:
    with tls_server(pki["leaf"]) as port:  # type: ignore[arg-type]
        yield port


def lines_of(stdout: str) -> list[list[str]]:
    return [line.split(None, 2) for line in stdout.splitlines()]


def test_a_server_chain_is_printed_leaf_to_root_with_openssls_pins(
    pki: dict[str, object], server: int
) -> None:
    result = cli("pin", f"127.0.0.1:{server}", "--ca-bundle", str(pki["dir"] / "ca.pem"))  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = lines_of(result.stdout)
    assert [line[0] for line in printed] == ["leaf", "intermediate", "root"]
    assert [line[1] for line in printed] == pki["pins"]
    assert printed[2][2].endswith("(not sent by the server: from the trust store)")
    assert "Pin Test Root" in printed[2][2]
    assert "trust store" not in printed[0][2] + printed[1][2]


def test_json_gives_a_list_of_objects(pki: dict[str, object], server: int) -> None:
    result = cli(
        "pin",
        f"localhost:{server}",
        "--ca-bundle",
        str(pki["dir"] / "ca.pem"),  # type: ignore[operator]
        "--json",
    )
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [entry["position"] for entry in entries] == ["leaf", "intermediate", "root"]
    assert [entry["pin"] for entry in entries] == pki["pins"]
    assert [entry["from"] for entry in entries] == ["server", "server", "trust store"]
    assert all(set(entry) == {"position", "subject", "pin", "from"} for entry in entries)


def test_a_chain_file_gives_the_same_pins(pki: dict[str, object]) -> None:
    result = cli("pin", "--cert", str(pki["dir"] / "chain.pem"))  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    printed = lines_of(result.stdout)
    assert [line[0] for line in printed] == ["leaf", "intermediate", "root"]
    assert [line[1] for line in printed] == pki["pins"]
    assert "trust store" not in result.stdout

    single = cli("pin", "--cert", str(pki["dir"] / "leaf.pem"), "--json")  # type: ignore[operator]
    assert single.returncode == 0, single.stderr
    [entry] = json.loads(single.stdout)
    assert entry == {
        "position": "leaf",
        "pin": pki["pins"][0],  # type: ignore[index]
        "subject": entry["subject"],
        "from": "file",
    }
    assert entry["subject"] in result.stdout.splitlines()[0]


def test_position_comes_from_the_certificate_not_its_place(
    pki: dict[str, object], tmp_path: Path
) -> None:
    reversed_chain = tmp_path / "reversed.pem"
    reversed_chain.write_bytes(b"".join(reversed(pki["chain"])))  # type: ignore[call-overload]
    result = cli("pin", "--cert", str(reversed_chain))
    assert [line[0] for line in lines_of(result.stdout)] == ["root", "intermediate", "leaf"]


def test_the_system_trust_store_does_not_know_a_private_ca(server: int) -> None:
    line = assert_one_line_error(cli("pin", f"127.0.0.1:{server}"), 1)
    assert f"127.0.0.1:{server}: certificate not verified" in line


def test_a_name_mismatch_exits_1(pki: dict[str, object]) -> None:
    with tls_server(pki["other"]) as port:  # type: ignore[arg-type]
        result = cli("pin", f"127.0.0.1:{port}", "--ca-bundle", str(pki["dir"] / "ca.pem"))  # type: ignore[operator]
    line = assert_one_line_error(result, 1)
    assert "certificate not verified" in line
    assert "mismatch" in line
    assert result.stdout == ""


def test_a_closed_port_exits_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = assert_one_line_error(cli("pin", f"127.0.0.1:{port}"), 1)
    assert line == f"strongroom: error: 127.0.0.1:{port}: connection refused"


def test_a_silent_server_times_out_and_exits_1() -> None:
    with tls_server(None) as port:
        line = assert_one_line_error(cli("pin", f"127.0.0.1:{port}", "--timeout", "0.5"), 1)
    assert line == f"strongroom: error: 127.0.0.1:{port}: timed out after 0.5 s"


def test_a_plain_tcp_server_is_a_tls_failure(pki: dict[str, object]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        result = cli("pin", f"127.0.0.1:{port}", "--ca-bundle", str(pki["dir"] / "ca.pem"))  # type: ignore[operator]
    finally:
        thread.join(10)
        listener.close()
    assert "TLS handshake failed" in assert_one_line_error(result, 1)


def test_ipv6_in_brackets(pki: dict[str, object]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        context = tls_server(pki["root"].issue_cert("::1"), "::1", socket.AF_INET6)  # type: ignore[attr-defined]
        port = context.__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        result = cli("pin", f"[::1]:{port}", "--ca-bundle", str(pki["dir"] / "ca.pem"))  # type: ignore[operator]
    finally:
        context.__exit__(None, None, None)
    assert result.returncode == 0, result.stderr
    assert [line[0] for line in lines_of(result.stdout)] == ["leaf", "root"]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: d / "missing.pem", "No such file or directory"),
        (lambda d: d, "Is a directory"),
        (lambda d: write(d / "text.pem", b"not a certificate\n"), "no PEM certificate"),
        (lambda d: write(d / "empty.pem", b""), "no PEM certificate"),
        (
            lambda d: write(
                d / "broken.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
            "no PEM certificate",
        ),
        (lambda d: write(d / "binary.der", bytes(range(256))), "no PEM certificate"),
    ],
)
@pytest.mark.parametrize("option", ["--cert", "--ca-bundle"])
def test_a_bad_file_exits_2_with_one_line(
    tmp_path: Path, make: object, says: str, option: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    args = ["pin", option, str(path)] + (["127.0.0.1:9"] if option == "--ca-bundle" else [])
    line = assert_one_line_error(cli(*args), 2)
    assert line.startswith(f"strongroom: error: {option} {path}: ")
    assert says in line


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["pin"],
        ["pin", "example.org", "--cert", "x.pem"],
        ["pin", "--cert", "x.pem", "--ca-bundle", "ca.pem"],
        ["pin", "example.org:0"],
        ["pin", "example.org:65536"],
        ["pin", "example.org:https"],
        ["pin", "example.org:"],
        ["pin", ":443"],
        ["pin", "::1"],
        ["pin", "[::1"],
        ["pin", "[::1]8443"],
        ["pin", "https://example.org/"],
        ["pin", "example.org", "--timeout", "0"],
        ["pin", "example.org", "--timeout", "soon"],
        ["pin", "example.org", "--timeout", "inf"],
        ["pin", "example.org", "--timeout", "nan"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str]) -> None:
    assert_one_line_error(cli(*args), 2)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("example.org", ("example.org", 443)),
        ("example.org:8443", ("example.org", 8443)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]", ("::1", 443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[fe80::1%eth0]:65535", ("fe80::1%eth0", 65535)),
    ],
)
def test_targets_parse(target: str, expected: tuple[str, int]) -> None:
    assert parse_target(target) == expected


def test_openssl_is_the_reference() -> None:
    """The oracle this file trusts is really there: the pins are not compared with themselves."""
    assert subprocess.run(["openssl", "version"], capture_output=True, check=False).returncode == 0
    with pytest.raises(UsageError):
        parse_target("a:b:c")
