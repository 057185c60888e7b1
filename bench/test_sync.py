"""The sync server over real HTTPS on one Redis and one PostgreSQL: throughput, scaling, sync.

Throughput: ``server_clients`` threads, each on its own keep-alive TLS connection and each a device
of its own account, send signed one-record pushes (300 B values, each to a new key, each with an
``Idempotency-Key``), signed before the round so the client's signing is not timed.  (Pushes of one
account queue on its counter row in PostgreSQL, one commit at a time: that caps one account, not the
server.)  "verification on" is the reference app (``create_app``); "verification off" is the same
Starlette routes without ``SignedRequestsMiddleware`` (no signature, nonce, idempotency record or
signed answer; the account check and its device lookup stay).  "verification on, no idempotency
keys" sends the same pushes without ``Idempotency-Key``: the defence alone (signature, nonce, signed
answer), without the exactly-once record a keyed request also costs.  Both are served by this module
as a child process (``python -m bench.test_sync MODE PORT``), uvicorn with ``strongroom serve``'s
options; the scaling rows are ``strongroom serve --workers N`` itself (as shipped: uvicorn 0.54's
``--workers`` leaves Nagle on, Kludex/uvicorn#3149).  Every server stays up for the module, warmed;
each test times one round on fresh connections, the rounds interleaved across the subjects
(``pytest_generate_tests``).  Each row also records the CPU time per push of the server processes,
Redis, PostgreSQL, the client threads and the whole machine (``/proc``), and how many cores were
busy: on 2 cores they all share the same CPUs.

Sync: device A's ``Syncer.sync()`` pushes ``sync_records`` records (or one blob of ``sync_blob``
bytes), then device B's pulls them, timed together.  Bytes on the wire are the HTTP/1.1 bytes
(request and status lines, headers, bodies) the server's h11 protocol received and sent, counted in
the server; TLS adds its handshakes and about 22 bytes per record of up to 16 KiB on top.  Beside
it, the same amount of ciphertext (what A's requests carried as sealed values or chunks) goes up in
one plain HTTPS PUT and comes back in one GET, to a trivial endpoint of the same server process that
keeps it in a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from uvicorn.protocols.http.h11_impl import H11Protocol

from bench import MiB, Sizes, pedantic, sizes_of
from strongroom import Strongroom, load_config
from strongroom.signing import headers as h
from strongroom.signing.signer import sign_request
from strongroom.signing.verifier import VerifiedRequest
from strongroom.sync import Syncer
from strongroom.transport import SyncRequest, SyncResponse
from strongroom_contrib.asgi import VERIFIED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postgres import PASSWORD, PASSWORD_VARIABLE, running_postgres  # type: ignore[import-not-found]
from redis_server import running_redis  # type: ignore[import-not-found]
from sync_server import make_device  # type: ignore[import-not-found]
from tls_servers import Pki, make_pki  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
#: The pushing clients' devices: client ``i`` is ``pusher-i.v1`` of account ``bench-i``.
KEYS = [os.urandom(32) for _ in range(64)]
VALUE = os.urandom(300)
App = Callable[..., Any]

# The server child ------------------------------------------------------------------------

#: HTTP bytes this server process received and sent (its h11 protocol's reads and writes).
WIRE = {"received": 0, "sent": 0}


class _CountedWrites:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WIRE["sent"] += len(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountingH11(H11Protocol):
    """uvicorn's h11 protocol, counting the plaintext HTTP bytes of every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CountedWrites(transport)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        WIRE["received"] += len(data)
        super().data_received(data)


def unverified(stack: Strongroom) -> App:
    """The reference server's routes without ``SignedRequestsMiddleware``: measurement only."""
    from starlette.applications import Starlette

    from strongroom_contrib.server._challenges import Challenges
    from strongroom_contrib.server._devices import DeviceKeys
    from strongroom_contrib.server._endpoints import Endpoints
    from strongroom_contrib.server.app import _raw_path_routing

    storage = stack.server_storage
    endpoints = Endpoints(
        storage, DeviceKeys(storage), Challenges(os.urandom(32), stack.nonce_cache)
    )
    routed = _raw_path_routing(Starlette(routes=endpoints.routes()))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        named = dict(scope.get("headers", ()))
        key_id, operation = (
            named.get(name, b"").decode() for name in (b"strongroom-key-id", b"idempotency-key")
        )
        scope[VERIFIED] = VerifiedRequest(
            key_id=key_id, nonce="", timestamp=0, idempotency_key=operation
        )
        await routed(scope, receive, send)

    return app


def server_app(verify: bool, plain: Path) -> App:
    """The app, beside ``/bench/wire`` (the counts) and ``/plain`` (a file, PUT and GET)."""
    from strongroom_contrib.server.run import app_from_config

    stack = Strongroom(load_config())
    inner = app_from_config(stack) if verify else unverified(stack)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, body = scope.get("path"), b""
        if scope["type"] != "http" or path not in ("/bench/wire", "/plain"):
            await inner(scope, receive, send)
            return
        if path == "/bench/wire":
            body = json.dumps(WIRE).encode()
        elif scope["method"] == "PUT":
            with open(plain, "wb") as out:
                while (message := await receive()).get("more_body", False):
                    out.write(message["body"])
                out.write(message.get("body", b""))
        download = (path, scope["method"]) == ("/plain", "GET")
        length = plain.stat().st_size if download else len(body)
        headers = [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if download:
            with open(plain, "rb") as handle:
                while piece := handle.read(MiB):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    """``python -m bench.test_sync on|off PORT``: uvicorn as ``strongroom serve`` runs it."""
    import uvicorn

    verify, port = sys.argv[1] == "on", int(sys.argv[2])
    table = load_config().server
    assert table is not None
    plain = Path(table.certfile).parent / f"plain-{port}"
    uvicorn.run(
        server_app(verify, plain), host="127.0.0.1", port=port, ssl_certfile=table.certfile,
        ssl_keyfile=table.keyfile, log_level="warning", access_log=False, server_header=False,
        proxy_headers=False, lifespan="on", ws="none", http=CountingH11,
    )  # fmt: skip


# The services and the servers ------------------------------------------------------------


@dataclass
class Cluster:
    pki: Pki
    env: dict[str, str]  # the servers' environment, which names their config
    stack: Strongroom  # the bench's own view of the server storage: registers devices
    pids: dict[str, int]  # redis, postgres

    def register(self, key_id: str, account: str, key: bytes) -> None:
        self.stack.server_storage.register_device(account, key_id, key)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    pki = make_pki(root)
    (secret := root / "secret").write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    with running_postgres() as postgres, running_redis() as redis:
        dbname = postgres.create_database("sync")
        config = root / "server.toml"
        config.write_text(
            f'[server]\ncertfile = "{pki.server.cert_chain}"\nkeyfile = "{pki.server.key}"\n'
            f'secret = "file:{secret}"\n'
            f'[server_storage]\nuse = "postgresql"\nhost = "{postgres.socket_dir}"\n'
            f'dbname = "{dbname}"\nuser = "strongroom"\npassword = "env:{PASSWORD_VARIABLE}"\n'
            '[nonce_cache]\nuse = "redis"\nurl = "env:BENCH_REDIS_URL"\n'
        )
        env = {**os.environ, PASSWORD_VARIABLE: PASSWORD, "BENCH_REDIS_URL": redis.url}
        env["STRONGROOM_CONFIG"] = str(config)
        postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
        pids = {"redis": redis.process.pid, "postgres": postmaster}
        with Strongroom(load_config(config, environ=env)) as stack:
            cluster = Cluster(pki, env, stack, pids)
            for i, key in enumerate(KEYS):
                cluster.register(f"pusher-{i}.v1", f"bench-{i}", key)
            yield cluster


@contextlib.contextmanager
def server(cluster: Cluster, how: str) -> Iterator[tuple[str, int]]:
    """``on``/``off`` (this module's child) or ``serve-N`` (``strongroom serve --workers N``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if how.startswith("serve-"):
        argv = [sys.executable, "-m", "strongroom.cli.main", "serve", "--workers", how[6:]]
        env = {**cluster.env, "STRONGROOM__SERVER__PORT": str(port)}
    else:
        argv, env = [sys.executable, "-m", "bench.test_sync", how, str(port)], cluster.env
    child = subprocess.Popen(argv, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert child.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", child.pid
    finally:
        child.terminate()
        child.wait(60)


# Throughput -------------------------------------------------------------------------------


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each root process and its descendants, from /proc.

    Also ``machine``: every CPU's busy seconds (``/proc/stat``: user, nice, system, irq,
    softirq), and ``steal``: time the hypervisor gave to other guests.
    """
    parent, spent = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            pid = int(stat.parent.name)
            parent[pid], spent[pid] = int(fields[1]), (int(fields[11]) + int(fields[12]))
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {}
    for name, root in roots.items():
        tree, grew = {root}, True
        while grew:
            more = {pid for pid, up in parent.items() if up in tree} - tree
            tree, grew = tree | more, bool(more)
        totals[name] = sum(spent.get(pid, 0) for pid in tree) / ticks
    cpu = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    totals["machine"], totals["steal"] = (sum(cpu[:3]) + cpu[5] + cpu[6]) / ticks, cpu[7] / ticks
    return totals


def signed_pushes(count: int, host: str, client: int, *, keyed: bool = True) -> list[bytes]:
    """``count`` requests of ``client``'s device, each a push of one new key, signed now.

    ``keyed``: each carries an ``Idempotency-Key`` (the server keeps its outcome).
    """
    path, key_id = f"/v1/accounts/bench-{client}/push", f"pusher-{client}.v1"
    requests = []
    for _ in range(count):
        change = {"key": secrets.token_urlsafe(12), "value": VALUE, "base_seq": None}
        body = msgspec.msgpack.encode({"changes": [change]})
        operation = secrets.token_urlsafe(16) if keyed else ""
        headers = sign_request(
            KEYS[client], key_id, "POST", path, body, idempotency_key=operation, now=time.time()
        )
        headers |= {"Host": host, "Content-Length": str(len(body))}
        if keyed:
            headers[h.IDEMPOTENCY_KEY] = operation
        headers["Content-Type"] = "application/msgpack"
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        requests.append(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    return requests


def exchange(connection: ssl.SSLSocket, requests: list[bytes]) -> list[int]:
    """Send each request and read its answer in turn; the statuses."""
    statuses, buffered = [], b""
    for request in requests:
        connection.sendall(request)
        while b"\r\n\r\n" not in buffered:
            buffered += connection.recv(65536)
        head, _, buffered = buffered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line[15:]) for line in lines if line.lower().startswith("content-length:")
        )
        while len(buffered) < length:
            buffered += connection.recv(65536)
        buffered = buffered[length:]
        statuses.append(int(lines[0].split()[1]))
    return statuses


VERIFIER = "signed pushes/s: reference server vs. without the verifier"
WORKERS = "signed pushes/s: strongroom serve, 1/2/4 workers"
#: Per subject: the server, the group, and whether each push carries an idempotency key.
SERVERS = {
    "verification off": ("off", VERIFIER, True),
    "verification on, no idempotency keys": ("on", VERIFIER, False),
    "verification on": ("on", VERIFIER, True),
    **{f"serve --workers {n}": (f"serve-{n}", WORKERS, True) for n in (1, 2, 4)},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Throughput one round a test, round by round across the subjects.

    Runs on this machine drift by a quarter within minutes; interleaved, a
    drift slows every subject alike.  ``bench/report.py`` joins a subject's
    rounds into one row.
    """
    if "throughput_round" in metafunc.fixturenames:
        rounds = sizes_of(metafunc.config).server_rounds
        cases = [(subject, n) for n in range(rounds) for subject in SERVERS]
        ids = [f"{subject}-{n}" for subject, n in cases]
        metafunc.parametrize(("subject", "throughput_round"), cases, ids=ids)


@pytest.fixture(scope="module")
def servers(cluster: Cluster, sizes: Sizes) -> Iterator[dict[str, tuple[str, int]]]:
    """Every throughput subject's server, up for the whole module and warmed."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(sizes.server_clients) as pool:
        running = {
            how: stack.enter_context(server(cluster, how))
            for how in dict.fromkeys(how for how, _, _ in SERVERS.values())
        }
        for url, _pid in running.values():
            for _ in range(2):  # connections, pools, caches, and tables past their first growth
                connections = connect(cluster, url, sizes.server_clients)
                list(pool.map(exchange, connections, batches(sizes, url, keyed=True)))
                for connection in connections:
                    connection.close()
        yield running


def connect(cluster: Cluster, url: str, count: int) -> list[ssl.SSLSocket]:
    """``count`` fresh TLS connections (a server closes idle keep-alive ones between tests)."""
    context = ssl.create_default_context(cafile=cluster.pki.ca_bundle)
    address = ("127.0.0.1", int(url.rpartition(":")[2]))
    return [
        context.wrap_socket(socket.create_connection(address), server_hostname="127.0.0.1")
        for _ in range(count)
    ]


def batches(sizes: Sizes, url: str, *, keyed: bool) -> list[list[bytes]]:
    """One round's pushes, a batch per client."""
    host, clients = url.removeprefix("https://"), sizes.server_clients
    return [
        signed_pushes(sizes.server_pushes // clients, host, i, keyed=keyed) for i in range(clients)
    ]


def test_throughput(
    benchmark: BenchmarkFixture,
    sizes: Sizes,
    *,
    cluster: Cluster,
    servers: dict[str, tuple[str, int]],
    subject: str,
    throughput_round: int,
) -> None:
    how, benchmark.group, keyed = SERVERS[subject]
    url, pid = servers[how]
    statuses: list[int] = []
    used: dict[str, float] = {}

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        return (connect(cluster, url, sizes.server_clients), batches(sizes, url, keyed=keyed)), {}

    def round_(connections: list[ssl.SSLSocket], pushes: list[list[bytes]]) -> None:
        before = cpu_seconds({"server": pid, **cluster.pids})
        before |= {"client": time.process_time(), "wall": time.perf_counter()}
        for answers in pool.map(exchange, connections, pushes):
            statuses.extend(answers)
        after = cpu_seconds({"server": pid, **cluster.pids})
        after |= {"client": time.process_time(), "wall": time.perf_counter()}
        used.update({name: after[name] - before[name] for name in after})
        for connection in connections:
            connection.close()

    with ThreadPoolExecutor(sizes.server_clients) as pool:
        pedantic(benchmark, round_, setup=setup, rounds=1)
    assert set(statuses) == {200}, sorted(set(statuses))
    wall = used.pop("wall")
    per_push = {name: round(1e6 * spent / len(statuses)) for name, spent in used.items()}
    benchmark.extra_info.update(
        subject=subject,
        ops=len(statuses),
        clients=sizes.server_clients,
        cpu_us_per_push=per_push,
        cores_busy=round(used["machine"] / wall, 2),
    )


# Sync between two devices -----------------------------------------------------------------

#: The ciphertext bytes each kind's sync carried up, for the plain copy of the same amount.
CARRIED: dict[str, int] = {}


def download(http: httpx.Client, url: str) -> int:
    with http.stream("GET", url) as response:
        return sum(len(part) for part in response.iter_bytes())


def ciphertext(request: SyncRequest) -> int:
    """The sealed values of a push, or the chunk of a chunk upload: what the server keeps."""
    if request.method == "PUT":
        return len(request.body)
    if request.path.endswith("/push"):
        changes = msgspec.msgpack.decode(request.body)["changes"]
        return sum(len(change["value"] or b"") for change in changes)
    return 0


@dataclass
class Copying:
    """The server the sync and the plain copy share, its client, and each phase's times."""

    url: str
    http: httpx.Client
    phases: dict[str, list[float]]

    def timed(self, name: str, run: Callable[[], object]) -> None:
        started = time.perf_counter()
        run()
        self.phases.setdefault(name, []).append(time.perf_counter() - started)

    def counted(self, run: Callable[[], object]) -> dict[str, int]:
        """Run; the HTTP bytes the server received and sent meanwhile."""
        before = self.http.get(self.url + "/bench/wire").json()
        run()
        after = self.http.get(self.url + "/bench/wire").json()
        return {f"wire_{name}": after[name] - before[name] for name in after}

    def report(self, benchmark: BenchmarkFixture, subject: str, wire: dict[str, int]) -> None:
        medians = {name: sorted(times)[len(times) // 2] for name, times in self.phases.items()}
        benchmark.extra_info.update(subject=subject, **wire, **medians)
        self.phases.clear()


@pytest.fixture(scope="module")
def copying(cluster: Cluster) -> Iterator[Copying]:
    context = ssl.create_default_context(cafile=cluster.pki.ca_bundle)
    with server(cluster, "on") as (url, _pid), httpx.Client(verify=context, timeout=600) as http:
        yield Copying(url, http, {})


def group(sizes: Sizes, kind: str) -> str:
    if kind == "records":
        return f"sync: {sizes.sync_records:,} records of 300 B between two devices"
    return f"sync: a {sizes.sync_blob // MiB} MiB blob between two devices"


@pytest.mark.parametrize("kind", ["records", "blob"])
def test_sync(
    benchmark: BenchmarkFixture, sizes: Sizes, cluster: Cluster, copying: Copying, kind: str
) -> None:
    benchmark.group, carried, wire = group(sizes, kind), list[int](), dict[str, int]()
    synced: list[tuple[Syncer, Syncer, Path]] = []

    def devices() -> tuple[tuple[object, ...], dict[str, object]]:
        finish()
        root, account = Path(tempfile.mkdtemp()), f"a{secrets.token_hex(4)}"
        a, b = (
            make_device(
                root / n, copying.url, cluster.pki, cluster, f"{n}-{account}", account=account
            )
            for n in "ab"
        )
        carried.clear()

        def send(request: SyncRequest) -> SyncResponse:
            carried.append(ciphertext(request))
            return cast(SyncResponse, a.send(request))

        first, second = Syncer(a, "notes", send=send), Syncer(b, "notes")
        first.create_key()
        second.import_key(first.export_key())
        if kind == "records":
            notes = range(sizes.sync_records)
            first.store.put_many((f"note-{n:06}", os.urandom(300)) for n in notes)
        else:
            size, pieces = sizes.sync_blob, range(0, sizes.sync_blob, MiB)
            first.store.put_blob("video", (os.urandom(min(MiB, size - at)) for at in pieces))
        return (first, second, root), {}

    def sync(first: Syncer, second: Syncer, root: Path) -> None:
        def both() -> None:
            copying.timed("push_s", first.sync)
            copying.timed("pull_s", second.sync)

        wire.update(copying.counted(both))
        synced.append((first, second, root))

    def finish() -> None:
        """Untimed, after a round: B has everything; both devices closed and removed."""
        while synced:
            first, second, root = synced.pop()
            got = [key for key in second.store.keys() if not key.startswith("strongroom.")]  # noqa: SIM118
            assert len(got) == (sizes.sync_records if kind == "records" else 1)
            for syncer in (first, second):
                syncer.close()
                syncer.stack.close()
            shutil.rmtree(root)

    pedantic(benchmark, sync, setup=devices, rounds=sizes.sync_rounds)
    finish()
    CARRIED[kind] = sum(carried)
    benchmark.extra_info["bytes"] = CARRIED[kind]
    if kind == "records":
        benchmark.extra_info["ops"] = sizes.sync_records
    copying.report(benchmark, "strongroom sync: A pushes, B pulls", wire)


@pytest.mark.parametrize("kind", ["records", "blob"])
def test_plain_copy(benchmark: BenchmarkFixture, sizes: Sizes, copying: Copying, kind: str) -> None:
    benchmark.group, wire = group(sizes, kind), dict[str, int]()
    size = CARRIED.get(kind, sizes.sync_records * 300 if kind == "records" else sizes.sync_blob)
    piece, url = os.urandom(MiB), copying.url + "/plain"

    def copy() -> None:
        body = (piece[: min(MiB, size - at)] for at in range(0, size, MiB))
        copying.timed("up_s", lambda: copying.http.put(url, content=body).raise_for_status())
        copying.timed("down_s", lambda: download(copying.http, url))

    pedantic(benchmark, lambda: wire.update(copying.counted(copy)), rounds=sizes.sync_rounds)
    benchmark.extra_info["bytes"] = size
    if kind == "records":
        benchmark.extra_info["ops"] = sizes.sync_records
    copying.report(benchmark, "plain HTTPS: the same ciphertext PUT, then GET", wire)


if __name__ == "__main__":
    main()
