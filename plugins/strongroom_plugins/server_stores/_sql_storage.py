"""``SqlServerStorage``: the ``ServerStorage`` methods, checked and run as transactions.

A backend supplies :meth:`SqlServerStorage.transaction`, which opens one
transaction, hands the statements an adaptor, commits (durably) or rolls
back, and turns its driver's errors into strongroom's.  Arguments are
checked here, before any database is touched.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from strongroom.backend import S_co
from strongroom.errors import UsageError
from strongroom.server_storage import Applied, BlobManifest, Change, Device, Page, ServerStorage
from strongroom_plugins.server_stores import _operations as ops

__all__ = ["SqlServerStorage"]

T = TypeVar("T")


class SqlServerStorage(ServerStorage[S_co]):
    """The slot's methods over :mod:`._operations`; a subclass only runs transactions."""

    @abstractmethod
    def transaction(self, work: Callable[[ops.Sql], T], *, write: bool = True) -> T:
        """Run ``work`` in one transaction and return its result once committed.

        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        :raises strongroom.errors.ServerStorageError: it refused the transaction.
        """

    def _account(self, account: str) -> str:
        return self.check_name("an account", account, self.MAX_ACCOUNT)

    def _upload(self, upload_id: str) -> str:
        return self.check_name("an upload id", upload_id, self.MAX_ACCOUNT)

    def register_device(self, account: str, key_id: str, key: bytes) -> None:
        self._account(account)
        self.check_name("a key id", key_id, self.MAX_ACCOUNT)
        if not isinstance(key, bytes) or not 16 <= len(key) <= 1024:
            raise UsageError("a device key is 16 to 1024 bytes")
        self.transaction(lambda sql: ops.register_device(sql, account, key_id, key))

    def device(self, key_id: str) -> Device | None:
        self.check_name("a key id", key_id, self.MAX_ACCOUNT)
        return self.transaction(lambda sql: ops.device(sql, key_id), write=False)

    def devices(self) -> list[Device]:
        return self.transaction(ops.devices, write=False)

    def retire_device(self, account: str, key_id: str) -> None:
        self._account(account)
        self.check_name("a key id", key_id, self.MAX_ACCOUNT)
        self.transaction(lambda sql: ops.retire_device(sql, account, key_id))

    def push(self, account: str, changes: Sequence[Change]) -> list[Applied]:
        self._account(account)
        changes = list(changes)
        self.check_changes(changes)
        if not changes:
            return []
        return self.transaction(lambda sql: ops.push(sql, account, changes))

    def pull(self, account: str, after: int = 0, limit: int = 1000) -> Page:
        self._account(account)
        self.check_page(after, limit)
        return self.transaction(lambda sql: ops.pull(sql, account, after, limit), write=False)

    def begin_blob(
        self, account: str, key: str, manifest: bytes, chunk_hashes: Sequence[bytes]
    ) -> str:
        self._account(account)
        self.check_name("a key", key, self.MAX_KEY)
        if not isinstance(manifest, bytes):
            raise UsageError("a manifest is bytes")
        hashes = self.check_hashes(chunk_hashes)
        now = int(self.clock())
        return self.transaction(
            lambda sql: ops.begin_blob(sql, account, key, manifest, hashes, now=now)
        )

    def put_chunk(self, account: str, upload_id: str, index: int, data: bytes) -> None:
        self._account(account)
        self._upload(upload_id)
        if not isinstance(data, bytes):
            raise UsageError("a chunk is bytes")
        now = int(self.clock())
        self.transaction(lambda sql: ops.put_chunk(sql, account, upload_id, index, data, now=now))

    def missing_chunks(self, account: str, upload_id: str) -> list[int]:
        self._account(account)
        self._upload(upload_id)
        return self.transaction(
            lambda sql: ops.missing_chunks(sql, account, upload_id), write=False
        )

    def commit_blob(self, account: str, upload_id: str, base_seq: int | None = None) -> Applied:
        self._account(account)
        self._upload(upload_id)
        self.check_seq(base_seq)
        return self.transaction(lambda sql: ops.commit_blob(sql, account, upload_id, base_seq))

    def blob_manifest(self, account: str, key: str) -> BlobManifest:
        self._account(account)
        self.check_name("a key", key, self.MAX_KEY)
        return self.transaction(lambda sql: ops.blob_manifest(sql, account, key), write=False)

    def prune_uploads(self, idle_since: float) -> int:
        if isinstance(idle_since, bool) or not isinstance(idle_since, int | float):
            raise UsageError("idle_since is a time in Unix seconds")
        return self.transaction(lambda sql: ops.prune_uploads(sql, int(idle_since)))

    def get_chunk(self, account: str, key: str, index: int) -> bytes:
        self._account(account)
        self.check_name("a key", key, self.MAX_KEY)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise UsageError("a chunk index is an integer >= 0")
        return self.transaction(lambda sql: ops.get_chunk(sql, account, key, index), write=False)
