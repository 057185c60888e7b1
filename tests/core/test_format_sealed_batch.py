"""Sealed version 2 in batches: shared subkeys, unique nonces, the reader's cache, fail closed.

A ``Subkeys`` seals many objects under one derived subkey and caches the
subkeys it has verified.  These tests hold it to what ``docs/formats.md``
promises: no (subkey, nonce) pair twice, across batches, threads and forks;
a cache hit skips HKDF but never a commitment check; every byte of a
batched object is still authenticated; wiped keys fail closed.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from counting import CountingSuite
from strongroom.cipher_suite import CipherSuite, KeyedAead
from strongroom.errors import AuthenticationError, IntegrityError, KeyLockedError, UsageError
from strongroom.formats import Context, Subkeys, _batch, open_sealed, seal
from strongroom.formats._fixed import fixed_randomness
from strongroom.formats.sealed import HEAD_SIZE
from strongroom.keys import DataKey
from strongroom.secret import Secret
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

SUITES = [Aes256Gcm, ChaCha20Poly1305, XChaCha20Poly1305]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONTEXT = Context(account="alice", store="notes", record="a")
OTHER = Context(account="alice", store="notes", record="b")


@pytest.fixture(params=SUITES, ids=lambda cls: cls.name)
def suite(request: pytest.FixtureRequest) -> CipherSuite:
    suite_class: type[CipherSuite] = request.param
    return suite_class()


def always(subkeys: Subkeys) -> Callable[[int], Subkeys]:
    return lambda _version: subkeys


def nonce_of(blob: bytes, suite: CipherSuite) -> bytes:
    return blob[HEAD_SIZE : HEAD_SIZE + suite.nonce_size]


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ (1 << (position % 8))]) + data[position + 1 :]


# the writer


def test_a_batch_shares_its_salt_and_counts_its_nonces(suite: CipherSuite) -> None:
    subkeys = Subkeys(suite, KEY, 3)
    blobs = [subkeys.seal(b"record %d" % i, CONTEXT) for i in range(5)]
    assert len({blob[:HEAD_SIZE] for blob in blobs}) == 1  # prefix, salt, commitment
    nonces = [nonce_of(blob, suite) for blob in blobs]
    assert len({nonce[:-4] for nonce in nonces}) == 1
    assert [int.from_bytes(nonce[-4:], "big") for nonce in nonces] == [0, 1, 2, 3, 4]
    other = Subkeys(suite, KEY, 3).seal(b"record 0", CONTEXT)
    assert other[11:43] != blobs[0][11:43]  # another writer: another salt
    assert nonce_of(other, suite)[:-4] != nonces[0][:-4]  # and another random prefix
    for i, blob in enumerate(blobs):
        assert open_sealed(blob, always(Subkeys(suite, KEY, 3)), CONTEXT) == b"record %d" % i


def test_a_batch_ends_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch, "BATCH_LIMIT", 3)
    suite = Aes256Gcm()
    subkeys = Subkeys(suite, KEY, 1)
    blobs = [subkeys.seal(b"x", CONTEXT) for _ in range(7)]
    salts = [blob[11:43] for blob in blobs]
    assert salts[0] == salts[1] == salts[2] != salts[3]
    assert salts[3] == salts[4] == salts[5] != salts[6]
    assert len(set(salts)) == 3
    counters = [int.from_bytes(nonce_of(blob, suite)[-4:], "big") for blob in blobs]
    assert counters == [0, 1, 2, 0, 1, 2, 0]
    assert all(open_sealed(blob, always(subkeys), CONTEXT) == b"x" for blob in blobs)


def test_threads_never_share_a_nonce_under_one_subkey() -> None:
    suite = Aes256Gcm()
    subkeys = Subkeys(suite, KEY, 1)
    threads, per_thread = 8, 300
    start = threading.Barrier(threads)
    sealed: list[list[bytes]] = [[] for _ in range(threads)]

    def writer(slot: int) -> None:
        start.wait()
        for _ in range(per_thread):
            sealed[slot].append(subkeys.seal(b"v", CONTEXT))

    workers = [threading.Thread(target=writer, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    pairs = [(blob[11:75], nonce_of(blob, suite)) for blobs in sealed for blob in blobs]
    assert len(pairs) == len(set(pairs)) == threads * per_thread
    salts = [{blob[11:43] for blob in blobs} for blobs in sealed]
    assert all(len(own) == 1 for own in salts)  # one batch per thread
    assert len(set.union(*salts)) == threads  # and no two threads share one


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_continues_its_parents_batch() -> None:
    suite = Aes256Gcm()
    subkeys = Subkeys(suite, KEY, 1)
    before = subkeys.seal(b"parent", CONTEXT)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: seal one object, hand it over, leave at once
        try:
            os.write(write, subkeys.seal(b"child", CONTEXT))
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    after = subkeys.seal(b"parent", CONTEXT)
    assert child[11:43] != before[11:43]  # the child drew its own salt
    assert after[11:43] == before[11:43]  # the parent carries on with its batch
    assert nonce_of(after, suite)[-4:] == (1).to_bytes(4, "big")
    assert open_sealed(child, always(subkeys), CONTEXT) == b"child"


def test_fixed_salt_and_prefix_are_checked() -> None:
    with fixed_randomness(nonce_prefix=bytes(7)), pytest.raises(UsageError):
        seal(Aes256Gcm(), KEY, 1, b"", CONTEXT)
    with fixed_randomness(salt=bytes(31)), pytest.raises(UsageError):
        seal(Aes256Gcm(), KEY, 1, b"", CONTEXT)
    with pytest.raises(UsageError):
        Subkeys(Aes256Gcm(), KEY, 2**32)


# the reader's cache


def test_a_cache_hit_skips_derivation_and_a_miss_derives_once() -> None:
    counting = CountingSuite()
    writer = Subkeys(counting, KEY, 1)
    blobs = [writer.seal(b"%d" % i, CONTEXT) for i in range(50)]
    assert counting.keyed_count == 1  # one derivation for the whole batch
    assert all(open_sealed(b, always(writer), CONTEXT) == b"%d" % i for i, b in enumerate(blobs))
    assert counting.keyed_count == 1  # the writer's own subkey serves its reads
    reader = Subkeys(counting, KEY, 1)  # another process, say
    assert all(open_sealed(b, always(reader), CONTEXT) == b"%d" % i for i, b in enumerate(blobs))
    assert counting.keyed_count == 2  # one more derivation, then hits


def test_a_forged_commitment_under_a_cached_salt_is_refused_before_decryption() -> None:
    counting = CountingSuite()
    subkeys = Subkeys(counting, KEY, 1)
    genuine = subkeys.seal(b"genuine", CONTEXT)
    assert open_sealed(genuine, always(subkeys), CONTEXT) == b"genuine"  # the salt is cached
    decryptions = counting.decryptions
    for forged_commitment in (bytes(32), flip(genuine, 60)[43:75]):
        forged = genuine[:43] + forged_commitment + genuine[75:]
        with pytest.raises(AuthenticationError):
            open_sealed(forged, always(subkeys), CONTEXT)
    assert counting.decryptions == decryptions  # refused by the commitment, no AEAD call
    # The commitment another key gives for the cached salt: it passes the
    # commitment under that key, never under ours, and the AEAD still refuses it.
    salt = genuine[11:43]
    with fixed_randomness(salt=salt):
        other = seal(counting, OTHER_KEY, 1, b"", CONTEXT)[43:75]
    forged = genuine[:43] + other + genuine[75:]
    with pytest.raises(AuthenticationError):
        open_sealed(forged, always(subkeys), CONTEXT)
    with pytest.raises(AuthenticationError):
        open_sealed(forged, always(Subkeys(counting, OTHER_KEY, 1)), CONTEXT)
    assert open_sealed(genuine, always(subkeys), CONTEXT) == b"genuine"  # nothing poisoned


def test_every_byte_of_a_batched_object_is_authenticated_with_a_warm_cache(
    suite: CipherSuite,
) -> None:
    subkeys = Subkeys(suite, KEY, 5)
    subkeys.seal(b"first of the batch", CONTEXT)
    blob = subkeys.seal(b"second of the batch", CONTEXT)
    assert open_sealed(blob, always(subkeys), CONTEXT) == b"second of the batch"
    for position in range(len(blob)):
        with pytest.raises(IntegrityError) as caught:
            open_sealed(flip(blob, position), always(subkeys), CONTEXT)
        if position >= 5:
            assert type(caught.value) is AuthenticationError, position
    for length in range(len(blob)):
        with pytest.raises(IntegrityError) as caught:
            open_sealed(blob[:length], always(subkeys), CONTEXT)
        if length >= HEAD_SIZE:  # past the header the AEAD refuses it: a short nonce or tag
            assert type(caught.value) is AuthenticationError, length
    with pytest.raises(AuthenticationError):
        open_sealed(blob + b"\0", always(subkeys), CONTEXT)


def test_a_suite_with_the_default_unchecked_decrypt_refuses_truncation_too() -> None:
    """``KeyedAead.unchecked_decrypt``'s default is ``decrypt``, whose own checks refuse."""
    counting = CountingSuite()
    subkeys = Subkeys(counting, KEY, 1)
    blob = subkeys.seal(b"value", CONTEXT)
    assert open_sealed(blob, always(subkeys), CONTEXT) == b"value"
    for length in range(HEAD_SIZE, len(blob)):
        with pytest.raises(AuthenticationError):
            open_sealed(blob[:length], always(subkeys), CONTEXT)


def test_objects_of_one_batch_cannot_be_swapped_or_spliced(suite: CipherSuite) -> None:
    subkeys = Subkeys(suite, KEY, 1)
    a = subkeys.seal(b"value of a", CONTEXT)
    b = subkeys.seal(b"value of b", OTHER)
    end = HEAD_SIZE + suite.nonce_size
    assert a[:HEAD_SIZE] == b[:HEAD_SIZE]  # same batch: same salt and commitment
    attempts = [
        (b, CONTEXT),  # b moved to a's record
        (a, OTHER),
        (a[:end] + b[end:], CONTEXT),  # a's header and nonce, b's body
        (b[:end] + a[end:], CONTEXT),
        (a[:HEAD_SIZE] + b[HEAD_SIZE:end] + a[end:], CONTEXT),  # b's nonce on a's body
    ]
    for blob, context in attempts:
        with pytest.raises(AuthenticationError):
            open_sealed(blob, always(subkeys), context)


def test_version_bytes_cannot_be_relabelled() -> None:
    suite = Aes256Gcm()
    v2 = seal(suite, KEY, 1, b"value", CONTEXT)
    with pytest.raises(AuthenticationError):  # read as version 1: another derivation
        open_sealed(v2[:4] + b"\x01" + v2[5:], always(Subkeys(suite, KEY, 1)), CONTEXT)


def test_alternating_batches_each_open_with_their_own_subkey() -> None:
    counting = CountingSuite()
    first, second = Subkeys(counting, KEY, 1), Subkeys(counting, KEY, 1)
    blobs = [writer.seal(b"%d" % i, CONTEXT) for i in range(6) for writer in (first, second)]
    reader = Subkeys(counting, KEY, 1)
    for _ in range(2):
        for i, blob in enumerate(blobs):
            assert open_sealed(blob, always(reader), CONTEXT) == b"%d" % (i // 2)
    assert counting.keyed_count == 4  # each writer's batch, then the reader's two


def test_the_cache_is_a_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch, "CACHE_SIZE", 3)
    counting = CountingSuite()
    batches = [seal(counting, KEY, 1, b"%d" % i, CONTEXT) for i in range(4)]
    reader = Subkeys(counting, KEY, 1)

    def read(index: int) -> int:
        before = counting.keyed_count
        assert open_sealed(batches[index], always(reader), CONTEXT) == b"%d" % index
        return counting.keyed_count - before  # derivations it took

    assert [read(0), read(1), read(2)] == [1, 1, 1]
    assert read(0) == 0  # a hit, and now the most recently used
    assert read(3) == 1  # evicts 1, the least recently used
    assert [read(0), read(2), read(3)] == [0, 0, 0]
    assert read(1) == 1


def test_another_suite_fails_before_any_derivation_or_decryption() -> None:
    counting = CountingSuite()
    blob = seal(ChaCha20Poly1305(), KEY, 1, b"value", CONTEXT)
    relabelled = blob[:5] + counting.code.to_bytes(2, "big") + blob[7:]
    with pytest.raises(AuthenticationError):
        open_sealed(blob, always(Subkeys(counting, KEY, 1)), CONTEXT)
    with pytest.raises(AuthenticationError):
        open_sealed(relabelled, always(Subkeys(ChaCha20Poly1305(), KEY, 1)), CONTEXT)
    assert counting.keyed_count == counting.decryptions == 0


# wiping


def test_a_cleared_subkeys_of_a_wiped_key_fails_closed() -> None:
    secret = Secret(bytearray(KEY), label="test key")
    subkeys = Subkeys(Aes256Gcm(), secret, 1)
    blob = subkeys.seal(b"value", CONTEXT)
    assert open_sealed(blob, always(subkeys), CONTEXT) == b"value"  # the subkey used last
    secret.wipe()
    subkeys.clear()
    with pytest.raises(KeyLockedError):
        subkeys.seal(b"value", CONTEXT)  # no batch left, and no key to start one
    with pytest.raises(KeyLockedError):
        open_sealed(blob, always(subkeys), CONTEXT)  # nothing cached, nothing to derive from


class BlockingSuite(Aes256Gcm):
    """AES-256-GCM whose next derivation waits for ``release``, once ``armed``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.deriving = threading.Event()
        self.release = threading.Event()

    def keyed(self, key: bytes) -> KeyedAead:
        if self.armed:
            self.deriving.set()
            assert self.release.wait(10)
        return super().keyed(key)


def test_a_reader_deriving_while_another_thread_clears_leaves_no_subkey() -> None:
    """``clear`` waits for a derivation under way, so the subkey it gave is not kept."""
    suite = BlockingSuite()
    blob = seal(suite, KEY, 1, b"value", CONTEXT)
    secret = Secret(bytearray(KEY), label="test key")
    subkeys = Subkeys(suite, secret, 1)
    suite.armed = True
    opened: list[bytes] = []
    reader = threading.Thread(
        target=lambda: opened.append(open_sealed(blob, always(subkeys), CONTEXT))
    )
    reader.start()
    clearing = threading.Thread(target=subkeys.clear)
    try:
        assert suite.deriving.wait(10)  # the reader is inside the derivation
        clearing.start()
        clearing.join(0.2)
        assert clearing.is_alive()  # it waits for the derivation: the lock is held through it
    finally:
        suite.armed = False
        suite.release.set()
    reader.join(10)
    clearing.join(10)
    assert opened == [b"value"]
    secret.wipe()
    with pytest.raises(KeyLockedError):  # nothing verified survived clear: it derives, and fails
        open_sealed(blob, always(subkeys), CONTEXT)


def test_wiping_a_data_key_drops_its_subkeys() -> None:
    key = DataKey("store:notes", 1, Aes256Gcm(), Secret(bytearray(KEY), label="test key"))
    blob = key.subkeys.seal(b"value", CONTEXT)
    assert open_sealed(blob, always(key.subkeys), CONTEXT) == b"value"
    key.wipe()
    assert key.material.wiped
    with pytest.raises(KeyLockedError):
        key.subkeys.seal(b"value", CONTEXT)
    with pytest.raises(KeyLockedError):
        open_sealed(blob, always(key.subkeys), CONTEXT)


def test_subkeys_show_no_key_and_refuse_pickling() -> None:
    subkeys = Subkeys(Aes256Gcm(), KEY, 7)
    subkeys.seal(b"value", CONTEXT)
    assert repr(subkeys) == "<Subkeys aes-256-gcm v7 (hidden)>"
    assert KEY.hex() not in repr(subkeys)
    with pytest.raises(TypeError):
        pickle.dumps(subkeys)


def test_the_documented_bounds_are_the_code_s() -> None:
    """docs/formats.md states the batch bound and the cache size; keep them true."""
    spec = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    assert _batch.BATCH_LIMIT == 65536
    assert "After **65536** (2^16) objects, start a new batch" in spec
    assert f"cache holds {_batch.CACHE_SIZE} subkeys per data key version" in spec
    assert _batch.COUNTER_SIZE == 4
