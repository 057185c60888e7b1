"""The verifier's keys: the server storage's active devices, looked up off the event loop.

:class:`~strongroom.signing.verifier.RequestVerifier` asks for a key id's
key while it verifies (in a worker thread: the middleware runs ``verify``
there) and again when it signs the answer (on the event loop).  The first
asks the storage, so a device retired a moment ago is refused at once; the
second must not block the loop, and takes the key the same request was
just verified with.  A storage that cannot answer refuses the request with
503 ``unavailable``, never 401: the device's key is not in question.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict

from strongroom.errors import RequestVerificationError, ServerStorageUnavailableError
from strongroom.server_storage import Device, ServerStorage

__all__ = ["DeviceKeys"]

log = logging.getLogger("strongroom.server")


class DeviceKeys:
    """``keys(key_id) -> bytes | None`` for the verifier; remembers the devices it has seen."""

    def __init__(self, storage: ServerStorage, *, remembered: int = 4096) -> None:
        self._storage = storage
        self._remembered = remembered
        self._seen: OrderedDict[str, Device] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key_id: str) -> bytes | None:
        if _on_event_loop():  # signing an answer: the key this request was verified with
            device = self.seen(key_id)
            return None if device is None else device.key
        device = self.lookup(key_id)
        return device.key if device is not None and device.active else None

    def lookup(self, key_id: str) -> Device | None:
        """The device as the storage has it now (blocking).

        :raises strongroom.errors.RequestVerificationError: 503, the storage cannot answer.
        """
        try:
            device = self._storage.device(key_id)
        except ServerStorageUnavailableError as exc:
            log.warning("server storage unavailable: %s", exc)
            raise RequestVerificationError(
                f"request refused (503 unavailable): the server storage: {exc}",
                status=503,
                reason="unavailable",
                server_time=int(time.time()),
            ) from exc
        if device is not None:
            with self._lock:
                self._seen[key_id] = device
                self._seen.move_to_end(key_id)
                while len(self._seen) > self._remembered:
                    self._seen.popitem(last=False)
        return device

    def seen(self, key_id: str) -> Device | None:
        """The device as last looked up (no I/O); ``None`` if it was not."""
        with self._lock:
            return self._seen.get(key_id)

    def __repr__(self) -> str:
        return f"<DeviceKeys storage={self._storage!r}>"


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
