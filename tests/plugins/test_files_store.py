"""The ``files`` store: the store contract, then what only a file layout can get wrong."""

from __future__ import annotations

import json
import os
import random
import re
import select
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from files_store_support import (
    CHUNK,
    RawRecordFiles,
    bind,
    blob_paths,
    files_under,
    header_version,
    open_files_store,
    path_of,
)
from msgspec import ValidationError

from strongroom.errors import IntegrityError, RecordNotFoundError, StoreError, UsageError
from strongroom.formats import peek_key_version
from strongroom.keys import AccountKeys
from strongroom.store import Store, StoreBinding
from strongroom.testing import MemoryKeyProvider, StoreContract, make_account_keys
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings


class TestFilesStoreContract(RawRecordFiles, StoreContract):
    blob_size = 5 * CHUNK + 123

    def open_store(self, binding: StoreBinding) -> Store:
        return open_files_store(binding)

    def counting(self, store: Store) -> dict[int, int]:
        return store.versions_in_use()  # never skipped: the files store counts


# fixtures for the files-specific tests


def only_record(store: FilesStore) -> Path:
    [path] = files_under(store.binding.directory / "records")
    return path


def assert_integrity_failure(call: Callable[[], object]) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        call()
    assert info.value.exit_code == 3
    return info.value


# settings and registration


def test_registered_as_the_files_store() -> None:
    [entry_point] = [ep for ep in entry_points(group="strongroom.stores") if ep.name == "files"]
    assert entry_point.load() is FilesStore
    assert FilesStore.Settings is FilesStoreSettings


@pytest.mark.parametrize("chunk_size", [4095, (64 << 20) + 1, 0, -1])
def test_chunk_size_is_validated(chunk_size: int) -> None:
    with pytest.raises(ValidationError):
        FilesStoreSettings(chunk_size=chunk_size)


def test_chunk_size_defaults_to_one_mebibyte() -> None:
    assert FilesStoreSettings().chunk_size == 1 << 20
    assert FilesStoreSettings(chunk_size=4096).chunk_size == 4096
    assert FilesStoreSettings(chunk_size=64 << 20).chunk_size == 64 << 20


def test_missing_directory_is_a_store_error(account_keys: AccountKeys) -> None:
    binding = StoreBinding("alice", "gone", account_keys.directory / "nowhere", account_keys)
    with pytest.raises(StoreError, match="cannot open"):
        FilesStore(binding=binding)


def test_closed_store_refuses_work(store: FilesStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put("k", b"v")


def test_oversized_and_unencodable_keys_are_usage_errors(store: FilesStore) -> None:
    with pytest.raises(UsageError):
        store.put("x" * 65536, b"")
    with pytest.raises(UsageError):
        store.put("\ud800", b"")
    store.put("x" * 65535, b"longest key")
    assert store.get("x" * 65535) == b"longest key"


# what the directory reveals

MARKER = b"PLAINTEXT-MARKER-7f3a"
KEYS = ["customer/alice@example.com", "passport-scan", "medical/diagnosis.txt"]


def assert_nothing_revealed(root: Path) -> None:
    for path in files_under(root):
        relative = path.relative_to(root).as_posix()
        for key in KEYS:
            assert key not in relative
            assert key.encode() not in path.read_bytes()
        assert MARKER not in path.read_bytes(), f"plaintext in {relative}"


def test_file_names_are_opaque_and_files_hold_no_plaintext(store: FilesStore) -> None:
    for key in KEYS:
        store.put(key, MARKER * 50)
    store.put_blob("passport-scan", [MARKER * 5000])
    store.binding.keys.rotate(store.binding.purpose)
    list(store.reencrypt())
    root = store.binding.directory
    for path in files_under(root):
        parts = path.relative_to(root).parts
        if parts == (".lock",):
            continue
        kind, shard, name = parts
        assert kind in {"records", "blobs"}
        assert re.fullmatch(r"[0-9a-f]{2}", shard)
        assert re.fullmatch(r"[0-9a-f]{64}(\.name)?", name)
        assert name.startswith(shard)
    assert_nothing_revealed(root)


def test_no_plaintext_reaches_a_temporary_file_mid_write(store: FilesStore) -> None:
    root = store.binding.directory
    seen_temporaries: list[Path] = []

    def chunks() -> Iterator[bytes]:
        for index in range(40):
            yield MARKER * 300
            if index in {5, 20, 39}:  # pause mid-write and look at the disk
                temporaries = [p for p in files_under(root) if p.name.endswith(".tmp")]
                assert temporaries, "the blob is written into a temporary file as it streams in"
                for temp in temporaries:
                    assert stat.S_IMODE(temp.stat().st_mode) == 0o600
                seen_temporaries.extend(temporaries)
                assert_nothing_revealed(root)

    store.put_blob(KEYS[0], chunks())
    assert seen_temporaries
    assert not [p for p in files_under(root) if p.name.endswith(".tmp")]
    assert_nothing_revealed(root)
    assert b"".join(store.get_blob(KEYS[0])) == MARKER * 300 * 40


def test_directories_are_0700_and_files_0600(store: FilesStore) -> None:
    store.put("record", b"v")
    store.put_blob("blob", [b"b"])
    store.binding.keys.rotate(store.binding.purpose)
    list(store.reencrypt())
    root = store.binding.directory
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


# tampering: every failure is an IntegrityError (CLI exit code 3)

#: Offsets in a sealed object: magic, format version, suite code, key version
#: (high and low byte), salt, commitment, ciphertext and the tag's last byte.
SEALED_OFFSETS = [0, 4, 5, 6, 7, 10, 11, 42, 43, 74, 75, 80, -1]


@pytest.mark.parametrize("offset", SEALED_OFFSETS)
def test_a_flipped_bit_in_a_record_is_refused(store: FilesStore, offset: int) -> None:
    store.put("k", b"a value long enough to have a body" * 3)
    path = only_record(store)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert_integrity_failure(lambda: store.get("k"))
    assert_integrity_failure(lambda: list(store.keys()))


@pytest.mark.parametrize("cut", [0, 3, 11, 74, 75, -16, -1])
def test_a_truncated_or_extended_record_is_refused(store: FilesStore, cut: int) -> None:
    store.put("k", b"value" * 20)
    path = only_record(store)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    assert_integrity_failure(lambda: store.get("k"))
    path.write_bytes(data + b"\0")
    assert_integrity_failure(lambda: store.get("k"))


def test_swapped_records_are_refused(store: FilesStore) -> None:
    store.put("first", b"1")
    store.put("second", b"2")
    first, second = path_of(store, "first"), path_of(store, "second")
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    assert_integrity_failure(lambda: store.get("first"))
    assert_integrity_failure(lambda: store.get("second"))
    assert_integrity_failure(lambda: list(store.keys()))


def test_a_record_copied_from_another_store_or_account_is_refused(
    store: FilesStore, account_keys: AccountKeys, tmp_path: Path
) -> None:
    bob_keys = make_account_keys(tmp_path / "bob", account="bob")
    bob_keys.create()
    with (
        open_files_store(bind(account_keys, "other")) as other_store,
        open_files_store(bind(bob_keys, "notes")) as bobs_store,
    ):
        store.put("k", b"alice's notes")
        other_store.put("k", b"alice's other store")
        bobs_store.put("k", b"bob's notes")
        target = only_record(store)
        original = target.read_bytes()
        for intruder in (other_store, bobs_store):
            target.write_bytes(path_of(intruder, "k").read_bytes())
            assert_integrity_failure(lambda: store.get("k"))
        target.write_bytes(original)
        assert store.get("k") == b"alice's notes"
    bob_keys.close()


def test_a_record_rolled_back_across_a_reencryption_is_refused(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("balance", b"100")
    path = only_record(store)
    old = path.read_bytes()
    store.put("balance", b"0")
    keys.rotate(purpose)
    assert [progress[-1] for progress in [list(store.reencrypt())]] == [(1, 1)]
    assert header_version(path) == 2
    path.write_bytes(old)  # an old, once valid copy under key version 1
    error = assert_integrity_failure(lambda: store.get("balance"))
    assert "rolled back" in str(error)
    assert_integrity_failure(lambda: list(store.keys()))


def test_a_blob_rolled_back_across_a_reencryption_is_refused(store: FilesStore) -> None:
    store.put_blob("b", [b"old" * 5000])
    blob, key_file = blob_paths(store, "b")
    old_blob, old_key_file = blob.read_bytes(), key_file.read_bytes()
    store.binding.keys.rotate(store.binding.purpose)
    list(store.reencrypt())
    blob.write_bytes(old_blob)
    assert_integrity_failure(lambda: b"".join(store.get_blob("b")))
    key_file.write_bytes(old_key_file)
    assert_integrity_failure(lambda: list(store.keys()))


def test_a_header_naming_a_future_key_version_is_refused(store: FilesStore) -> None:
    store.put("k", b"v")
    path = only_record(store)
    data = bytearray(path.read_bytes())
    data[7:11] = (2).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    assert_integrity_failure(lambda: store.get("k"))


def test_a_symbolic_link_is_refused(store: FilesStore) -> None:
    store.put("k", b"v")
    path = only_record(store)
    real = path.with_name("elsewhere")
    path.rename(real)
    path.symlink_to(real)
    assert_integrity_failure(lambda: store.get("k"))


def test_tampered_blobs_are_refused(store: FilesStore) -> None:
    data = os.urandom(3 * CHUNK + 10)
    store.put_blob("b", [data])
    store.put_blob("c", [data])
    blob, key_file = blob_paths(store, "b")
    original = blob.read_bytes()
    header = 4 + 1 + 2 + 4 + 4 + 32 + 32
    stride = CHUNK + 16

    # a flipped bit in the middle chunk: the chunks before it verified, then it stops
    tampered = bytearray(original)
    tampered[header + stride + 100] ^= 0x01
    blob.write_bytes(bytes(tampered))
    stream = store.get_blob("b")
    assert next(stream) == data[:CHUNK]
    with pytest.raises(IntegrityError):
        next(stream)
    # header bits, truncation at a chunk boundary, a dropped or duplicated chunk
    variants = [
        bytes([original[0] ^ 1]) + original[1:],
        original[:8] + bytes([original[8] ^ 1]) + original[9:],
        original[: header + 2 * stride],
        original[: header + stride] + original[header + 2 * stride :],
        original[: header + stride]
        + original[header : header + stride]
        + original[header + stride :],
        original[:-1],
        original + b"\0" * 16,
    ]
    for variant in variants:
        blob.write_bytes(variant)
        assert_integrity_failure(lambda: b"".join(store.get_blob("b")))
    # another blob's file, or a key file swapped in
    other_blob, other_key_file = blob_paths(store, "c")
    blob.write_bytes(other_blob.read_bytes())
    assert_integrity_failure(lambda: b"".join(store.get_blob("b")))
    blob.write_bytes(original)
    key_file.write_bytes(other_key_file.read_bytes())
    assert_integrity_failure(lambda: list(store.keys()))


# lazy and bulk re-encryption


def test_reading_an_old_record_reseals_it_under_the_primary(store: FilesStore) -> None:
    store.put("k", b"v")
    path = path_of(store, "k")
    store.binding.keys.rotate(store.binding.purpose)
    assert header_version(path) == 1
    assert store.get("k") == b"v"
    assert header_version(path) == 2
    store.binding.keys.destroy(store.binding.purpose, 1, force=True)
    assert store.get("k") == b"v"


def test_a_failed_reseal_does_not_fail_the_read(
    store: FilesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("k", b"v")
    store.binding.keys.rotate(store.binding.purpose)

    def refuse(target: Path, data: bytes) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_disk, "write_temp", refuse)
    assert store.get("k") == b"v"
    assert header_version(path_of(store, "k")) == 1


def test_a_reseal_never_overwrites_a_newer_write(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("k", b"old")
    store.binding.keys.rotate(store.binding.purpose)
    other = open_files_store(bind(account_keys))
    write_temp = _disk.write_temp

    def racing(target: Path, data: bytes) -> Path:
        temp = write_temp(target, data)
        monkeypatch.setattr(_disk, "write_temp", write_temp)
        other.put("k", b"new")  # another writer lands between the read and the reseal
        return temp

    monkeypatch.setattr(_disk, "write_temp", racing)
    assert store.get("k") == b"old"
    assert store.get("k") == b"new"
    assert not [p for p in files_under(store.binding.directory) if p.name.endswith(".tmp")]
    other.close()


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in files_under(root) if path.name != ".lock"}


def test_reencrypt_touches_only_stale_files_and_resumes(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    for index in range(10):
        store.put(f"r{index}", bytes([index]) * 100)
    store.put_blob("b", [os.urandom(2 * CHUNK)])
    keys.rotate(purpose)
    store.get("r0")  # re-sealed lazily
    progress = store.reencrypt()
    assert next(progress) == (0, 11)
    for _ in range(4):
        next(progress)
    del progress  # interrupted part-way
    partial = snapshot(store.binding.directory)
    versions = [peek_key_version(data[:16]) for data in partial.values()]
    assert 1 in versions
    assert 2 in versions
    assert keys.floor(purpose) == 0

    assert list(store.reencrypt())[-1] == (11, 11)  # resumes and completes
    done = snapshot(store.binding.directory)
    assert {header_version(path) for path in done} == {2}
    assert keys.floor(purpose) == 2
    for path, data in partial.items():
        if peek_key_version(data[:16]) == 2:
            assert done[path] == data, "a current file was rewritten"
    assert list(store.reencrypt())[-1] == (11, 11)
    assert snapshot(store.binding.directory) == done
    keys.destroy(purpose, 1, force=True)
    assert [store.get(f"r{index}") for index in range(10)] == [
        bytes([index]) * 100 for index in range(10)
    ]


def test_reencrypt_does_not_lower_or_skip_the_floor(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("k", b"v")
    keys.rotate(purpose)
    list(store.reencrypt())
    keys.rotate(purpose)
    store.put("fresh", b"under v3")
    list(store.reencrypt())
    assert header_version(path_of(store, "k")) == 3
    assert keys.floor(purpose) == 3


def test_a_write_with_a_key_older_than_a_new_floor_is_redone(
    store: FilesStore, account_keys: AccountKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that began before a rotation and ends after a completed pass is re-sealed."""
    keys, purpose = account_keys, store.binding.purpose
    store.put("other", b"x")
    store.put_blob("blob", [b"old blob"])
    other = open_files_store(bind(account_keys))
    write_temp = _disk.write_temp
    calls = 0

    def rotate_and_reencrypt_meanwhile(target: Path, data: bytes) -> Path:
        nonlocal calls
        calls += 1
        temp = write_temp(target, data)
        if calls == 1:
            keys.rotate(purpose)
            list(other.reencrypt())
        return temp

    monkeypatch.setattr(_disk, "write_temp", rotate_and_reencrypt_meanwhile)
    store.put("k", b"written across a re-encryption")
    assert header_version(path_of(store, "k")) == 2
    assert store.get("k") == b"written across a re-encryption"

    calls = 0
    store.put_blob("blob", [os.urandom(2 * CHUNK)])
    blob, key_file = blob_paths(store, "blob")
    assert (header_version(blob), header_version(key_file)) == (3, 3)
    assert len(b"".join(store.get_blob("blob"))) == 2 * CHUNK
    other.close()


# what a crash can leave behind


def test_stray_temporary_files_are_ignored(store: FilesStore) -> None:
    store.put("k", b"v")
    store.put_blob("b", [b"blob"])
    record = path_of(store, "k")
    blob, _ = blob_paths(store, "b")
    for directory in (record.parent, blob.parent, store.binding.directory / "records"):
        (directory / f".{record.name}.0123456789abcdef01234567.tmp").write_bytes(b"junk")
    assert list(store.keys()) == ["b", "k"]
    store.binding.keys.rotate(store.binding.purpose)
    assert list(store.reencrypt())[-1] == (2, 2)
    assert store.get("k") == b"v"


def test_an_orphan_blob_key_file_is_ignored_then_removed(store: FilesStore) -> None:
    store.put_blob("b", [b"blob"])
    store.put("k", b"v")
    blob, key_file = blob_paths(store, "b")
    blob.unlink()  # a crash between renaming the key file and the blob
    assert list(store.keys()) == ["k"]
    list(store.reencrypt())
    assert not key_file.exists()
    with pytest.raises(RecordNotFoundError):
        store.delete("b")


def test_a_blob_without_its_key_file_is_an_integrity_error(store: FilesStore) -> None:
    store.put_blob("b", [b"blob"])
    blob_paths(store, "b")[1].unlink()
    assert_integrity_failure(lambda: list(store.keys()))


def test_a_record_and_blob_left_side_by_side_are_both_readable(store: FilesStore) -> None:
    store.put("k", b"record")
    record = path_of(store, "k")
    saved = record.read_bytes()
    store.put_blob("k", [b"blob"])
    record.write_bytes(saved)  # as if killed between the blob's rename and the record's removal
    assert list(store.keys()) == ["k"]
    assert store.get("k") == b"record"
    assert b"".join(store.get_blob("k")) == b"blob"
    store.put("k", b"settled")
    with pytest.raises(RecordNotFoundError):
        store.get_blob("k")
    assert list(store.keys()) == ["k"]


# two processes at once

OWN, SHARED, STEPS, EVERY = 12, 5, 120, 20
EVERYTHING = sorted(
    [f"p{me}-{index}" for me in (0, 1) for index in range(OWN)]
    + [f"shared-{index}" for index in range(SHARED)]
)

WORKER = r"""
import json, os, random, sys
from pathlib import Path

from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

me, seed, account_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
OWN, SHARED, STEPS, EVERY = (int(arg) for arg in sys.argv[4:8])
everything = json.loads(sys.argv[8])
keys = make_account_keys(
    account_dir, account="alice", provider=MemoryKeyProvider(kek=bytes.fromhex(os.environ["KEK"]))
)
keys.unlock()
binding = StoreBinding("alice", "notes", account_dir / "stores" / "notes", keys)
store = FilesStore(FilesStoreSettings(chunk_size=4096), binding=binding)
rng = random.Random(seed * 2 + me)
last = {}


def write(key, value):
    # switch forms often: a key is a record or a blob at random
    if rng.random() < 0.4:
        store.put_blob(key, [value[i : i + 3000] for i in range(0, len(value), 3000)])
    else:
        store.put(key, value)
    last[key] = value.hex()


for step in range(1, STEPS + 1):
    write(f"p{me}-{rng.randrange(OWN)}", f"{me}:{step}:".encode() * rng.randrange(1, 400))
    write(f"shared-{rng.randrange(SHARED)}", f"shared {me}:{step}".encode() * rng.randrange(1, 400))
    # every key exists throughout, so every read and listing must find it in some form
    b"".join(store.get_any(f"p{1 - me}-{rng.randrange(OWN)}"))
    if step % 10 == 0:
        listed = list(store.keys())
        assert listed == everything, (step, sorted(set(listed) ^ set(everything)))
        for key in listed:
            b"".join(store.get_any(key))
    if step % EVERY == 0:
        print(f"at {step}", flush=True)
print(json.dumps({"steps": step, "last": last}), flush=True)
"""


@pytest.fixture
def seed() -> int:
    """A seed for every random choice; pytest shows it when the test fails."""
    value = int(os.environ.get("STRONGROOM_TEST_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"seed {value}: replay with STRONGROOM_TEST_SEED={value}")
    return value


def read_line(worker: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """The worker's next line; fails with its error output if it died or stalled."""
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], timeout)
    line = worker.stdout.readline() if ready else b""
    if not line:
        worker.kill()
        _, err = worker.communicate()
        raise AssertionError(f"worker stopped without a line: {err.decode()}")
    return line.decode().strip()


def read_any(store: FilesStore, key: str) -> bytes:
    return b"".join(store.get_any(key))


def check_last_writes_won(store: FilesStore, reports: list[dict[str, Any]]) -> None:
    """Each process's own keys hold its last value; shared ones the last of either."""
    for report in reports:
        for key, value in report["last"].items():
            if key.startswith("p"):
                assert read_any(store, key) == bytes.fromhex(value), key
    for key in EVERYTHING:
        if key.startswith("shared"):
            finals = {bytes.fromhex(r["last"][key]) for r in reports if key in r["last"]}
            assert read_any(store, key) in (finals or {b"initial"}), key


def test_two_processes_lose_nothing(tmp_path: Path, seed: int) -> None:
    """Two writers switch keys between forms while the keys rotate and re-encrypt.

    What each process writes is drawn from the seed; the rotations and
    passes happen at checkpoints both workers have passed, so every run has
    them mid-flight whatever the machine's speed.  Each worker asserts that
    every read and listing finds every key (they all exist throughout).
    """
    kek = random.Random(seed).randbytes(32)
    keys = make_account_keys(tmp_path / "alice", provider=MemoryKeyProvider(kek=kek))
    keys.create()
    store = open_files_store(bind(keys))
    for key in EVERYTHING:
        store.put(key, b"initial")
    arguments = [str(keys.directory), str(OWN), str(SHARED), str(STEPS), str(EVERY)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(me), str(seed), *arguments, json.dumps(EVERYTHING)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "KEK": kek.hex()},
        )
        for me in (0, 1)
    ]
    try:
        for checkpoint in range(EVERY, STEPS, EVERY):
            for worker in workers:
                assert read_line(worker) == f"at {checkpoint}"
            # Both are past the checkpoint and still writing: rotate under them, so their
            # reads re-seal each other's records, and re-encrypt, so writes race the floor.
            keys.rotate(store.binding.purpose)
            if checkpoint % (2 * EVERY) == 0:
                list(store.reencrypt())
            assert list(store.keys()) == EVERYTHING
        reports = []
        for worker in workers:
            assert read_line(worker) == f"at {STEPS}"
            reports.append(json.loads(read_line(worker)))
            assert worker.wait(timeout=60) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.communicate()
    assert [report["steps"] for report in reports] == [STEPS, STEPS]
    check_last_writes_won(store, reports)
    assert list(store.keys()) == EVERYTHING
    assert list(store.reencrypt())[-1] == (len(EVERYTHING),) * 2
    primary = keys.primary_version(store.binding.purpose)
    assert primary == len(range(EVERY, STEPS, EVERY)) + 1
    for version in range(1, primary):
        keys.destroy(store.binding.purpose, version, force=True)
    for key in EVERYTHING:
        read_any(store, key)
    store.close()
    keys.close()
