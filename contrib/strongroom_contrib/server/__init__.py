"""The reference sync server (``strongroom serve``): opaque ciphertext per account, signed.

``create_app(storage, nonce_cache)`` is the whole protocol of
``docs/sync-protocol.md`` as an ASGI application; :mod:`.run` serves it
with uvicorn over TLS from a config's ``[server]`` table.
"""

from __future__ import annotations

from strongroom_contrib.server.app import DEFAULT_MAX_BODY_BYTES, HEALTH, READY, create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HEALTH", "READY", "create_app"]
