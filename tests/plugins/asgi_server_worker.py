"""A sync server process for the multi-process middleware tests.

``python asgi_server_worker.py PORT CERT_CHAIN KEY``: uvicorn over TLS on
``127.0.0.1:PORT``, the signed-requests middleware in front of one route,
replay and idempotency state in the ``redis`` nonce cache named by
``$REDIS_URL``.  ``POST /v1/notes`` counts its runs in Redis (``runs``), so
the test sees how often the handler ran across every process.
"""

from __future__ import annotations

import logging
import os
import sys

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_client import KEY, KEY_ID
from strongroom.settings import SecretRef
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom_contrib.asgi import SignedRequestsMiddleware
from strongroom_plugins.nonce_caches.redis import RedisNonceCache, RedisNonceCacheSettings


def main() -> None:
    port, cert_chain, key = sys.argv[1:4]
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    cache = RedisNonceCache(
        RedisNonceCacheSettings(url=SecretRef("env", "REDIS_URL"), socket_timeout=1.0)
    )
    counter = redis.Redis.from_url(os.environ["REDIS_URL"])

    async def notes(request: Request) -> Response:
        body = await request.body()
        run = counter.incr("runs")
        return JSONResponse({"run": run, "pid": os.getpid(), "body": body.decode()}, 201)

    app = SignedRequestsMiddleware(
        Starlette(routes=[Route("/v1/notes", notes, methods=["POST"])]),
        verifier=RequestVerifier(KeyRing({KEY_ID: KEY}), cache),
        idempotency=cache,
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        ssl_certfile=cert_chain,
        ssl_keyfile=key,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
    )


if __name__ == "__main__":
    main()
