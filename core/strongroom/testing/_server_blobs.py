"""The blob half of ``ServerStorageContract``: chunked uploads, resume, and their isolation."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from strongroom.errors import (
    IntegrityError,
    ServerObjectNotFoundError,
    UploadIncompleteError,
    UsageError,
)
from strongroom.server_storage import Change, ServerStorage

__all__ = ["BlobContract"]

ALICE, BOB = "alice", "bob"


def chunk(index: int, size: int = 1000) -> bytes:
    """An encrypted chunk stand-in, different for each index."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (size // 32) + b"\x00" * (size % 32)


def digests(count: int, size: int = 1000) -> list[bytes]:
    return [hashlib.sha256(chunk(index, size)).digest() for index in range(count)]


class BlobContract:
    """Needs the ``storage`` fixture and ``open_storage()`` of ``ServerStorageContract``."""

    #: A blob big enough that holding it whole in memory would show; streamed in chunks.
    large_chunk_size = 256 * 1024
    large_chunks = 40

    def open_storage(self) -> ServerStorage:
        raise NotImplementedError  # pragma: no cover - ServerStorageContract's

    def upload(self, storage: ServerStorage, key: str = "photo", count: int = 4) -> str:
        upload = storage.begin_blob(ALICE, key, b"manifest:" + key.encode(), digests(count))
        for index in range(count):
            storage.put_chunk(ALICE, upload, index, chunk(index))
        return upload

    def test_a_blob_is_uploaded_committed_and_read(self, storage: ServerStorage) -> None:
        applied = storage.commit_blob(ALICE, self.upload(storage))
        assert not applied.conflict
        blob = storage.blob_manifest(ALICE, "photo")
        assert (blob.seq, blob.manifest, list(blob.chunk_hashes)) == (
            applied.seq,
            b"manifest:photo",
            digests(4),
        )
        assert [storage.get_chunk(ALICE, "photo", index) for index in range(4)] == [
            chunk(index) for index in range(4)
        ]
        entry = storage.pull(ALICE).entries[-1]
        assert (entry.key, entry.kind, entry.value) == ("photo", "blob", b"manifest:photo")
        with pytest.raises(ServerObjectNotFoundError):
            storage.get_chunk(ALICE, "photo", 4)

    def test_a_chunk_with_the_wrong_hash_is_refused(self, storage: ServerStorage) -> None:
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(2))
        with pytest.raises(IntegrityError):
            storage.put_chunk(ALICE, upload, 0, chunk(1))
        with pytest.raises(IntegrityError):
            storage.put_chunk(ALICE, upload, 1, chunk(1)[:-1])
        assert storage.missing_chunks(ALICE, upload) == [0, 1]
        with pytest.raises(UsageError):
            storage.put_chunk(ALICE, upload, 2, chunk(2))

    def test_an_interrupted_upload_resumes_with_only_the_missing_chunks(
        self, storage: ServerStorage
    ) -> None:
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(6))
        for index in (0, 2, 3):
            storage.put_chunk(ALICE, upload, index, chunk(index))
        storage.close()  # the connection drops; a new server process picks up
        with self.open_storage() as reopened:
            resumed = reopened.begin_blob(ALICE, "photo", b"m", digests(6))
            assert resumed == upload
            missing = reopened.missing_chunks(ALICE, upload)
            assert missing == [1, 4, 5]
            for index in missing:
                reopened.put_chunk(ALICE, upload, index, chunk(index))
            assert reopened.missing_chunks(ALICE, upload) == []
            assert not reopened.commit_blob(ALICE, upload).conflict

    def test_storing_a_chunk_again_is_a_no_op(self, storage: ServerStorage) -> None:
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(2))
        storage.put_chunk(ALICE, upload, 0, chunk(0))
        storage.put_chunk(ALICE, upload, 0, chunk(0))
        assert storage.missing_chunks(ALICE, upload) == [1]

    def test_a_commit_is_refused_while_chunks_are_missing(self, storage: ServerStorage) -> None:
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(3))
        storage.put_chunk(ALICE, upload, 1, chunk(1))
        with pytest.raises(UploadIncompleteError):
            storage.commit_blob(ALICE, upload)
        with pytest.raises(ServerObjectNotFoundError):
            storage.blob_manifest(ALICE, "photo")
        assert storage.pull(ALICE).entries == ()

    def test_a_stale_commit_conflicts_and_keeps_the_upload(self, storage: ServerStorage) -> None:
        first = storage.commit_blob(ALICE, self.upload(storage))
        storage.push(ALICE, [Change("photo", b"a record now")])
        upload = self.upload(storage, count=2)
        stale = storage.commit_blob(ALICE, upload, base_seq=first.seq)
        assert stale.conflict
        assert stale.seq > first.seq
        assert storage.missing_chunks(ALICE, upload) == []
        assert not storage.commit_blob(ALICE, upload, base_seq=stale.seq).conflict
        assert storage.blob_manifest(ALICE, "photo").chunk_hashes == tuple(digests(2))

    def test_a_committed_upload_is_closed(self, storage: ServerStorage) -> None:
        upload = self.upload(storage)
        storage.commit_blob(ALICE, upload)
        with pytest.raises(ServerObjectNotFoundError):
            storage.put_chunk(ALICE, upload, 0, chunk(0))
        with pytest.raises(ServerObjectNotFoundError):
            storage.commit_blob(ALICE, upload)

    def test_a_record_or_a_delete_replaces_a_blob(self, storage: ServerStorage) -> None:
        committed = storage.commit_blob(ALICE, self.upload(storage))
        deleted = storage.push(ALICE, [Change("photo", None, base_seq=committed.seq)])[0]
        assert not deleted.conflict
        with pytest.raises(ServerObjectNotFoundError):
            storage.blob_manifest(ALICE, "photo")
        with pytest.raises(ServerObjectNotFoundError):
            storage.get_chunk(ALICE, "photo", 0)
        assert storage.pull(ALICE, after=committed.seq).entries[0].kind == "deleted"

    def test_malformed_hashes_are_refused(self, storage: ServerStorage) -> None:
        for hashes in ([], [b"short"], [b"x" * 32] * (ServerStorage.MAX_CHUNKS + 1)):
            with pytest.raises(UsageError):
                storage.begin_blob(ALICE, "photo", b"m", hashes)

    def test_an_account_cannot_use_anothers_upload(self, storage: ServerStorage) -> None:
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(2))
        storage.put_chunk(ALICE, upload, 0, chunk(0))
        for attempt in (
            lambda: storage.put_chunk(BOB, upload, 1, chunk(1)),
            lambda: storage.missing_chunks(BOB, upload),
            lambda: storage.commit_blob(BOB, upload),
        ):
            with pytest.raises(ServerObjectNotFoundError):
                attempt()
        assert storage.missing_chunks(ALICE, upload) == [1]
        assert storage.begin_blob(BOB, "photo", b"m", digests(2)) != upload

    def test_an_account_cannot_read_anothers_blob(self, storage: ServerStorage) -> None:
        storage.commit_blob(ALICE, self.upload(storage))
        with pytest.raises(ServerObjectNotFoundError):
            storage.blob_manifest(BOB, "photo")
        with pytest.raises(ServerObjectNotFoundError):
            storage.get_chunk(BOB, "photo", 0)
        assert storage.pull(BOB).entries == ()

    def test_a_large_blob_moves_chunk_by_chunk(self, storage: ServerStorage) -> None:
        size, count = self.large_chunk_size, self.large_chunks
        tracemalloc.start()
        try:
            upload = storage.begin_blob(ALICE, "video", b"m", digests(count, size))
            for index in range(count):
                storage.put_chunk(ALICE, upload, index, chunk(index, size))
            storage.commit_blob(ALICE, upload)
            read = hashlib.sha256()
            for index in range(count):
                read.update(storage.get_chunk(ALICE, "video", index))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        whole = hashlib.sha256(b"".join(chunk(index, size) for index in range(count)))
        assert read.digest() == whole.digest()
        assert peak < 8 * size, "the blob was held in memory whole, not chunk by chunk"

    # abandoned uploads

    def test_an_idle_upload_is_pruned_with_its_chunks(self, storage: ServerStorage) -> None:
        storage.clock = lambda: 1_000.0
        upload = storage.begin_blob(ALICE, "photo", b"m", digests(4))
        storage.put_chunk(ALICE, upload, 0, chunk(0))
        storage.begin_blob(BOB, "photo", b"m", digests(4))  # every account's
        assert storage.prune_uploads(1_000) == 0  # active at 1,000: not idle since then
        assert storage.prune_uploads(1_001) == 2
        with pytest.raises(ServerObjectNotFoundError):
            storage.missing_chunks(ALICE, upload)
        with pytest.raises(ServerObjectNotFoundError):
            storage.put_chunk(ALICE, upload, 1, chunk(1))
        again = storage.begin_blob(ALICE, "photo", b"m", digests(4))
        assert again != upload
        assert storage.missing_chunks(ALICE, again) == [0, 1, 2, 3]  # everything is sent anew

    def test_a_chunk_or_a_resume_keeps_an_upload(self, storage: ServerStorage) -> None:
        storage.clock = lambda: 1_000.0
        sending = storage.begin_blob(ALICE, "sending", b"m", digests(4))
        resumed = storage.begin_blob(ALICE, "resumed", b"m", digests(4))
        storage.clock = lambda: 5_000.0
        storage.put_chunk(ALICE, sending, 2, chunk(2))
        assert storage.begin_blob(ALICE, "resumed", b"m", digests(4)) == resumed
        assert storage.prune_uploads(4_000) == 0
        assert storage.missing_chunks(ALICE, sending) == [0, 1, 3]

    def test_a_committed_blob_is_never_pruned(self, storage: ServerStorage) -> None:
        storage.clock = lambda: 1_000.0
        storage.commit_blob(ALICE, self.upload(storage))
        assert storage.prune_uploads(10**10) == 0
        assert storage.get_chunk(ALICE, "photo", 3) == chunk(3)
