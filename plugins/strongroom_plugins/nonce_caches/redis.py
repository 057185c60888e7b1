"""``redis``: replay and idempotency state shared by every server process on one Redis.

A nonce is one key, ``<prefix>nonce:<key id>:<nonce>``, written with ``SET
key 1 NX PX ttl``: Redis makes it atomic, so of any number of processes
exactly one records it.  The TTL is ``expires_at`` less this process's
clock (not ``PXAT``), so an entry lives as long as the verifier that wrote
it would accept its request, whatever Redis' own clock says.

An idempotency record is a hash, ``<prefix>idem:<scope>:<key>``, changed
only by the Lua scripts below, so begin and complete are atomic too.

A server's event loop uses the awaitable steps (``AsyncReplayState``): one
pipelined connection per running loop (:mod:`._redis_pipe`, which says why
not redis-py's asyncio client), and one script that records the nonce and
claims the idempotency key in a single round trip.  Await
:meth:`RedisNonceCache.aclose` before a loop ends (the reference server
does at lifespan shutdown).

Redis must not evict: an evicted nonce is a replayable request.  On first
use, and again every minute, the backend reads ``maxmemory-policy`` and
refuses to serve while it evicts (``allkeys-*``, ``volatile-*``); with
``noeviction`` a full Redis refuses writes, and so requests (503).  A
server that forbids ``CONFIG`` gets one warning and is trusted.  Every
Redis error becomes the slot's unavailable error in one line that names
where Redis is, never the password the URL may hold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote, urlsplit

import msgspec
import redis
from redis.commands.core import Script

from strongroom.errors import (
    IdempotencyUnavailableError,
    NonceCacheUnavailableError,
    StrongroomError,
)
from strongroom.idempotency import (
    DEFAULT_KEEP_S,
    DEFAULT_LEASE_S,
    AsyncReplayState,
    Begun,
    Claim,
    IdempotencyStore,
    Outcome,
    State,
)
from strongroom.nonce_cache import NonceCache
from strongroom.settings import BackendSettings, SecretRef
from strongroom_plugins.nonce_caches._redis_pipe import RedisPipe

__all__ = ["RedisNonceCache", "RedisNonceCacheSettings"]

log = logging.getLogger(__name__)

_POLICY_RECHECK_S = 60.0

#: Claim the record ``record`` for fingerprint ``fp`` with a lease of ``lease`` ms, or say why not.
_CLAIM = """
local held = redis.call('HMGET', record, 'fp', 'status', 'headers', 'body')
if not held[1] then
  redis.call('HSET', record, 'fp', fp)
  redis.call('PEXPIRE', record, lease)
  return {'new'}
end
if held[1] ~= fp then return {'mismatch'} end
if not held[2] then return {'in_flight'} end
return {'replay', held[2], held[3], held[4]}
"""

_BEGIN = "local record, fp, lease = KEYS[1], ARGV[1], ARGV[2]" + _CLAIM

#: The nonce (KEYS[1], for ARGV[1] ms) and then, if it was new, the claim.
_ADMIT = (
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return {'seen'} end\n"
    "local record, fp, lease = KEYS[2], ARGV[2], ARGV[3]" + _CLAIM
)

_COMPLETE = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'status')
if held[1] and (held[1] ~= ARGV[1] or held[2]) then return 0 end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

_RELEASE = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'status')
if held[1] == ARGV[1] and not held[2] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisNonceCacheSettings(BackendSettings, frozen=True, kw_only=True):
    url: Annotated[
        SecretRef,
        msgspec.Meta(
            description="secret reference to redis://, rediss:// or unix:// URL (may hold a "
            "password)"
        ),
    ]
    key_prefix: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_.:{}-]*$",
            max_length=64,
            description="prefix of every key written",
        ),
    ] = "strongroom:"
    socket_timeout: Annotated[
        float, msgspec.Meta(gt=0, le=60, description="seconds per command")
    ] = 2.0
    connect_timeout: Annotated[
        float, msgspec.Meta(gt=0, le=60, description="seconds to connect")
    ] = 2.0


class RedisNonceCache(NonceCache[RedisNonceCacheSettings], IdempotencyStore, AsyncReplayState):
    """Thread-safe (one redis-py connection pool); ``clock`` (Unix seconds) is injectable."""

    Settings = RedisNonceCacheSettings

    def __init__(
        self,
        settings: RedisNonceCacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings)
        self._clock = clock
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Script] = {}
        self._url = ""
        #: By ``id`` of its event loop: that loop and its connection.
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, RedisPipe]] = {}
        self._where = "redis"
        self._password = ""
        self._policy_checked_at: float | None = None
        self._lock = threading.Lock()

    # -- NonceCache -------------------------------------------------------------------------

    def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        """Record the pair with ``SET NX PX``; see :meth:`NonceCache.add`.

        :raises NonceCacheUnavailableError: Redis cannot answer, is full, or evicts.
        """
        try:
            client = self._ready(NonceCacheUnavailableError)
            return bool(
                client.set(self._nonce(key_id, nonce), b"1", nx=True, px=self._ttl(expires_at))
            )
        except redis.RedisError as exc:
            self._fail(exc, NonceCacheUnavailableError)

    # -- IdempotencyStore -------------------------------------------------------------------

    def begin(
        self, scope: str, key: str, fingerprint: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begun:
        return _begun(self._run("begin", scope, key, fingerprint, _ms(lease_s)))

    def complete(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        self._run("complete", scope, key, fingerprint, *_stored(outcome), _ms(keep_s))

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        self._run("release", scope, key, fingerprint)

    def _run(self, script: str, scope: str, key: str, *args: str | bytes | int) -> Any:
        try:
            self._ready(IdempotencyUnavailableError)
            return self._scripts[script](keys=[self._record(scope, key)], args=list(args))
        except redis.RedisError as exc:
            self._fail(exc, IdempotencyUnavailableError)

    # -- AsyncReplayState -------------------------------------------------------------------

    async def admit(
        self, key_id: str, nonce: str, expires_at: float, claim: Claim | None = None
    ) -> Begun | None:
        """The nonce with ``SET NX PX``, or with the claim in one script; see the interface.

        :raises NonceCacheUnavailableError: Redis cannot answer, is full, or evicts.
        """
        nonce_key, ttl = self._nonce(key_id, nonce), self._ttl(expires_at)
        try:
            pipe = await self._pipe(NonceCacheUnavailableError)
            if claim is None:
                fresh = await pipe.call("SET", nonce_key, b"1", "NX", "PX", ttl)
                return _NEW if fresh is not None else None
            keys = [nonce_key, self._record(claim.scope, claim.key)]
            answer = await pipe.script(_ADMIT, keys, [ttl, claim.fingerprint, _ms(claim.lease_s)])
        except redis.RedisError as exc:
            self._fail(exc, NonceCacheUnavailableError)
        return None if answer[0] == b"seen" else _begun(answer)

    async def complete_async(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        await self._run_async("complete", scope, key, fingerprint, *_stored(outcome), _ms(keep_s))

    async def release_async(self, scope: str, key: str, fingerprint: str) -> None:
        await self._run_async("release", scope, key, fingerprint)

    async def aclose(self) -> None:
        """Close the running loop's connection (idempotent)."""
        entry = self._loops.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()

    async def _run_async(self, script: str, scope: str, key: str, *args: str | bytes | int) -> Any:
        try:
            pipe = await self._pipe(IdempotencyUnavailableError)
            return await pipe.script(_SCRIPTS[script], [self._record(scope, key)], list(args))
        except redis.RedisError as exc:
            self._fail(exc, IdempotencyUnavailableError)

    async def _pipe(self, error: type[NonceCacheUnavailableError]) -> RedisPipe:
        """The running loop's connection, made on first use, with the eviction policy checked."""
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is None or entry[0] is not loop:
            self._ready(error, check_policy=False)  # resolves the URL once, names Redis
            entry = (
                loop,
                RedisPipe(
                    self._url,
                    timeout=self.settings.socket_timeout,
                    connect_timeout=self.settings.connect_timeout,
                ),
            )
            self._loops = {
                key: held for key, held in self._loops.items() if not held[0].is_closed()
            } | {id(loop): entry}
        pipe = entry[1]
        if self._policy_due():
            try:
                reply = await pipe.call("CONFIG", "GET", "maxmemory-policy")
            except redis.ResponseError as exc:
                self._policy_unreadable(exc)
            else:
                pairs = iter(item.decode() for item in reply)
                self._judge_policy(dict(zip(pairs, pairs, strict=False)), error)
        return pipe

    def _nonce(self, key_id: str, nonce: str) -> str:
        return f"{self.settings.key_prefix}nonce:{key_id}:{nonce}"

    def _record(self, scope: str, key: str) -> str:
        return f"{self.settings.key_prefix}idem:{scope}:{key}"

    def _ttl(self, expires_at: float) -> int:
        """Milliseconds from this process's clock until ``expires_at``; at least 1."""
        return max(1, math.ceil((expires_at - self._clock()) * 1000))

    # -- connection, policy, errors ---------------------------------------------------------

    def _ready(
        self, error: type[NonceCacheUnavailableError], *, check_policy: bool = True
    ) -> redis.Redis:
        """The client, connected on first use, with the eviction policy checked."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._connect(error)
        if check_policy and self._policy_due():
            try:
                reply = client.config_get("maxmemory-policy")
            except redis.ResponseError as exc:
                self._policy_unreadable(exc)
            else:
                self._judge_policy(reply, error)
        return client

    def _policy_due(self) -> bool:
        checked = self._policy_checked_at
        return checked is None or self._clock() - checked > _POLICY_RECHECK_S

    def _connect(self, error: type[NonceCacheUnavailableError]) -> redis.Redis:
        try:
            url = self.settings.url.resolve().decode("utf-8", "replace")
        except StrongroomError as exc:  # names the reference, never the secret
            raise error(f"redis URL {self.settings.url}: {exc}") from None
        parts = urlsplit(url)
        self._password = unquote(parts.password or "")
        if parts.scheme == "unix":
            self._where = f"redis at {parts.path}"
        else:
            try:
                self._where = f"redis at {parts.hostname}:{parts.port or 6379}"
            except ValueError:
                self._where = "redis"
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=self.settings.socket_timeout,
                socket_connect_timeout=self.settings.connect_timeout,
            )
        except ValueError:
            raise error(
                f"redis URL {self.settings.url}: expected a redis://, rediss:// or unix:// URL"
            ) from None
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}
        self._url = url
        self._client = client
        return client

    def _policy_unreadable(self, exc: redis.ResponseError) -> None:
        """A server that forbids ``CONFIG`` is trusted, with one warning; other errors raise."""
        forbidden = isinstance(exc, redis.exceptions.NoPermissionError) or (
            "unknown command" in str(exc).lower()  # CONFIG renamed away
        )
        if not forbidden:
            raise exc
        if self._policy_checked_at is None:
            log.warning(
                "%s does not let strongroom read maxmemory-policy; it must be "
                "noeviction, or an evicted nonce is a replayable request",
                self._where,
            )
        self._policy_checked_at = math.inf

    def _judge_policy(self, reply: Any, error: type[NonceCacheUnavailableError]) -> None:
        policy = str(reply.get("maxmemory-policy", ""))
        if policy.startswith(("allkeys-", "volatile-")):
            self._policy_checked_at = None
            raise error(
                f"{self._where} runs with maxmemory-policy {policy}, which evicts keys: an "
                "evicted nonce is a replayable request; set maxmemory-policy noeviction"
            )
        self._policy_checked_at = self._clock()

    def _fail(self, exc: redis.RedisError, error: type[NonceCacheUnavailableError]) -> NoReturn:
        """Raise ``error`` in one line naming the cause, never the password."""
        text = " ".join(str(exc).split())[:200]
        if self._password:
            text = text.replace(self._password, "***")
        raise error(f"{self._where} cannot answer ({type(exc).__name__}: {text})") from None

    def close(self) -> None:
        """Close the blocking client, and each event loop's client whose loop can still run it."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        loops, self._loops = self._loops, {}
        for loop, pipe in loops.values():
            if loop.is_closed():  # its sockets went with it
                continue
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(pipe.aclose(), loop)
            else:
                loop.run_until_complete(pipe.aclose())

    def __repr__(self) -> str:
        return f"<RedisNonceCache url={self.settings.url} key_prefix={self.settings.key_prefix!r}>"


_SCRIPTS = {"admit": _ADMIT, "begin": _BEGIN, "complete": _COMPLETE, "release": _RELEASE}
_NEW = Begun(State.NEW)


def _begun(answer: list[Any]) -> Begun:
    """The begin script's answer: a state, and for a replay the stored outcome."""
    state = State(answer[0].decode())
    if state is not State.REPLAY:
        return Begun(state)
    status, headers, body = answer[1:4]
    pairs = tuple((str(name), str(value)) for name, value in json.loads(headers))
    return Begun(state, Outcome(int(status), pairs, bytes(body)))


def _stored(outcome: Outcome) -> tuple[str, str, bytes]:
    """The outcome's status, headers (JSON) and body, as the complete script takes them."""
    headers = json.dumps([list(pair) for pair in outcome.headers], separators=(",", ":"))
    return str(outcome.status), headers, outcome.body


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
