"""Challenge tokens for operations that need fresh authorisation.

A token is stateless: ``v1.<expires>.<nonce>.<mac>``, where the MAC is
HMAC-SHA256 under the deployment's server secret over the account, the
device's key id, the operation (the idempotency key of the write it
authorises), the expiry and the nonce.  Any process holding the secret can
check it; it is made single use by recording its nonce in the nonce cache
(scope ``challenge:<key id>``) when it is redeemed, so a second redemption,
on any process sharing the cache, fails.  The token travels in the
``Strongroom-Challenge`` header, which the request signature covers: a
proxy can neither strip it nor move it to another request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

from strongroom.errors import UsageError
from strongroom.nonce_cache import NonceCache
from strongroom.signing.headers import CHALLENGE, b64

__all__ = ["CHALLENGE", "TTL_S", "Challenges"]
#: Seconds a token is valid.
TTL_S = 60

_LABEL = b"strongroom-challenge-v1"
_TOKEN = re.compile(r"v1\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


class Challenges:
    """Issues and redeems tokens; ``secret`` is shared by every process of a deployment.

    :raises strongroom.errors.UsageError: the secret is shorter than 32 bytes.
    """

    def __init__(
        self, secret: bytes, nonces: NonceCache, *, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 32:
            raise UsageError("the challenge-token secret must be at least 32 bytes")
        self._secret = bytes(secret)
        self._nonces = nonces
        self._clock = clock

    def issue(self, account: str, key_id: str, operation: str) -> tuple[str, int]:
        """A token for ``operation`` by ``key_id`` under ``account``, and its expiry."""
        expires = int(self._clock()) + TTL_S
        nonce = b64(secrets.token_bytes(16))
        mac = self._mac(account, key_id, operation, expires, nonce)
        return f"v1.{expires}.{nonce}.{mac}", expires

    def redeem(self, token: str, account: str, key_id: str, operation: str) -> bool:
        """Whether ``token`` is valid for this operation and not redeemed before; spends it.

        Blocking: it records the token in the nonce cache.

        :raises strongroom.errors.NonceCacheUnavailableError: the cache cannot answer.
        """
        found = _TOKEN.fullmatch(token)
        if found is None:
            return False
        expires, nonce, mac = int(found[1]), found[2], found[3]
        expected = self._mac(account, key_id, operation, expires, nonce)
        if not hmac.compare_digest(expected, mac) or expires < self._clock():
            return False
        return self._nonces.add(f"challenge:{key_id}", nonce, expires + 1)

    def _mac(self, account: str, key_id: str, operation: str, expires: int, nonce: str) -> str:
        # NUL never occurs in an account, a key id or an operation: the fields are unambiguous
        message = b"\0".join(
            (_LABEL, account.encode(), key_id.encode(), operation.encode(), b"%d" % expires)
        )
        return b64(hmac.digest(self._secret, message + b"\0" + nonce.encode(), hashlib.sha256))

    def __repr__(self) -> str:
        return f"<Challenges ttl={TTL_S}s nonces={self._nonces!r}>"
