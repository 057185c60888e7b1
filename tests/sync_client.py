"""A signing client of the sync protocol (``docs/sync-protocol.md``) for the server's tests.

``SyncClient(http, url, account, device)`` sends MessagePack requests to
``/v1/accounts/<account>/...``, signed by an :class:`asgi_client.Device`,
with a fresh ``Idempotency-Key`` on every write unless one is given (and
a ``Strongroom-Challenge`` token, signed, when one is given), and
checks every answer's signature when it is signed.  ``seal_record`` seals
a plaintext as a device would before pushing it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from asgi_client import Answer, Device
from strongroom.formats.context import Context
from strongroom.formats.sealed import seal
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

__all__ = ["SyncClient", "chunk_hashes", "decoded", "encoded", "seal_record"]


def encoded(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def decoded(answer: Answer) -> Any:
    return msgspec.msgpack.decode(answer.response.content)


def chunk_hashes(chunks: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(chunk).digest() for chunk in chunks]


def seal_record(key: bytes, account: str, record: str, plaintext: bytes) -> bytes:
    """``plaintext`` sealed (strongroom's sealed format, AES-256-GCM) for ``record``."""
    return seal(Aes256Gcm(), key, 1, plaintext, Context(account, "notes", record))


def path_segment(text: str) -> str:
    return quote(text, safe="")


@dataclass
class SyncClient:
    http: httpx.Client
    url: str
    account: str
    device: Device

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        idempotency_key: str | None = None,
        challenge: str = "",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        if idempotency_key is None and method in ("POST", "PUT"):
            idempotency_key = secrets.token_urlsafe(16)
        full = f"/v1/accounts/{path_segment(self.account)}{path}"
        return self.device.send(
            self.http,
            self.url,
            method,
            full,
            body,
            idempotency_key=idempotency_key or "",
            challenge=challenge,
            headers=headers,
        )

    def push(self, *changes: tuple[str, bytes | None, int | None], **options: Any) -> Answer:
        items = [{"key": key, "value": value, "base_seq": base} for key, value, base in changes]
        return self.call("POST", "/push", encoded({"changes": items}), **options)

    def pull(self, after: int = 0, limit: int = 1000) -> Answer:
        return self.call("GET", f"/changes?after={after}&limit={limit}")

    def begin(self, key: str, manifest: bytes, chunks: list[bytes]) -> Answer:
        body = {"key": key, "manifest": manifest, "chunk_hashes": chunk_hashes(chunks)}
        return self.call("POST", "/uploads", encoded(body))

    def put_chunk(self, upload: str, index: int, data: bytes) -> Answer:
        return self.call("PUT", f"/uploads/{path_segment(upload)}/chunks/{index}", data)

    def missing(self, upload: str) -> Answer:
        return self.call("GET", f"/uploads/{path_segment(upload)}")

    def commit(self, upload: str, base_seq: int | None = None, **options: Any) -> Answer:
        body = encoded({"base_seq": base_seq})
        return self.call("POST", f"/uploads/{path_segment(upload)}/commit", body, **options)

    def blob(self, key: str) -> Answer:
        return self.call("GET", f"/blobs/{path_segment(key)}")

    def chunk(self, key: str, index: int) -> Answer:
        return self.call("GET", f"/blobs/{path_segment(key)}/chunks/{index}")

    def challenge(self, operation: str) -> Answer:
        return self.call("POST", "/challenges", encoded({"operation": operation}))
