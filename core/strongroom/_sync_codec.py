"""What the server holds for a store's key: an opaque id and payloads sealed under the sync key.

The server-side key of record ``key`` of store ``store`` is
base64url(HMAC-SHA256(names key, ``store`` NUL ``key``)), 43 characters,
where the names key is HMAC-SHA256(sync key, ``"strongroom/v1/sync-names"``):
the server never sees a store or record name.  A payload is a MessagePack
map ``{"store", "key", "value" or "manifest"}`` sealed (the sealed format)
under the sync key with the context (account, ``"sync"``, server key), so
it opens only under that id; an opened payload must also name the store
and key the id is made from, else it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from strongroom.errors import AuthenticationError, IntegrityError
from strongroom.formats.context import Context
from strongroom.formats.sealed import open_sealed, seal

if TYPE_CHECKING:
    from strongroom.cipher_suite import CipherSuite
    from strongroom.secret import Secret

__all__ = ["SYNC_CONTEXT", "Payload", "SyncCodec"]

#: The store field of every sync context.
SYNC_CONTEXT = "sync"
_NAMES_LABEL = b"strongroom/v1/sync-names"


class Payload(msgspec.Struct, frozen=True):
    """The plaintext of what the server keeps for a key."""

    store: str
    key: str
    value: bytes | None = None
    #: A blob's chunked-format manifest (its chunk hashes).
    manifest: bytes | None = None

    def __repr__(self) -> str:
        return f"Payload({self.store!r}, {self.key!r})"


@dataclass
class SyncCodec:
    """Seals and opens one account's sync payloads under its sync key."""

    account: str
    suite: CipherSuite
    key: Secret
    version: int

    def server_key(self, store: str, key: str) -> str:
        material = bytearray(self.key.view())
        try:
            names = hmac.new(material, _NAMES_LABEL, hashlib.sha256).digest()
        finally:
            material[:] = bytes(len(material))
        mac = hmac.new(names, f"{store}\0{key}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def context(self, server_key: str) -> Context:
        return Context(self.account, SYNC_CONTEXT, server_key)

    def seal(self, payload: Payload) -> tuple[str, bytes]:
        """The payload's server key and its sealed bytes."""
        server_key = self.server_key(payload.store, payload.key)
        plaintext = msgspec.msgpack.encode(payload)
        return server_key, seal(
            self.suite, self.key.view(), self.version, plaintext, self.context(server_key)
        )

    def open(self, server_key: str, sealed: bytes) -> Payload:
        """The payload kept under ``server_key``.

        :raises strongroom.errors.AuthenticationError: it is not sealed under
            the sync key for that id (altered, or moved from another key).
        :raises strongroom.errors.IntegrityError: it opens but names another id.
        """

        def lookup(found: int) -> tuple[CipherSuite, memoryview]:
            if found != self.version:
                raise AuthenticationError
            return self.suite, self.key.view()

        plaintext = open_sealed(sealed, lookup, self.context(server_key))
        try:
            payload = msgspec.msgpack.decode(plaintext, type=Payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise IntegrityError("a sync payload is malformed") from None
        if not hmac.compare_digest(self.server_key(payload.store, payload.key), server_key):
            raise IntegrityError("a sync payload names another key than the one it is under")
        return payload

    def key_for(self, version: int) -> tuple[CipherSuite, memoryview]:
        """The chunked format's key lookup, for blobs."""
        if version != self.version:
            raise AuthenticationError
        return self.suite, self.key.view()
