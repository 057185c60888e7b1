"""A server process for the two-process Redis tests: one JSON command per stdin line.

Run as ``python redis_worker.py``; the redis URL comes from ``$REDIS_URL``
through a secret reference, as a server's config would give it.  Every
answer is one JSON line on stdout; its log (DEBUG, strongroom's loggers and
redis-py's) goes to stderr, which the test searches for the password.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from strongroom.errors import NonceCacheUnavailableError
from strongroom.idempotency import Outcome
from strongroom.settings import SecretRef
from strongroom_plugins.nonce_caches.redis import RedisNonceCache, RedisNonceCacheSettings


def answer(cache: RedisNonceCache, command: dict[str, Any]) -> Any:
    op = command["op"]
    if op == "add":
        return cache.add(command["key_id"], command["nonce"], command["expires_at"])
    if op == "begin_many":
        return [cache.begin("phone.v1", key, command["fp"]).state.value for key in command["keys"]]
    if op == "begin":
        begun = cache.begin("phone.v1", command["key"], command["fp"])
        body = begun.outcome.body.decode() if begun.outcome else None
        return [begun.state.value, body]
    if op == "complete":
        outcome = Outcome(command["status"], (), command["body"].encode())
        cache.complete("phone.v1", command["key"], command["fp"], outcome)
        return None
    raise ValueError(op)


def main() -> None:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    settings = RedisNonceCacheSettings(url=SecretRef("env", "REDIS_URL"), socket_timeout=1.0)
    with RedisNonceCache(settings) as cache:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            try:
                reply = {"ok": answer(cache, json.loads(line))}
            except NonceCacheUnavailableError as exc:
                logging.getLogger("worker").warning("refused: %s", exc)
                reply = {"error": type(exc).__name__, "message": str(exc)}
            print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
