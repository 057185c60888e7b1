"""The chunked format: round trips, random access, the manifest, and every way to tamper.

Tampering tests decrypt with ``decrypt_stream`` and with ``ChunkedReader``.
Besides raising, ``decrypt_stream`` must not have written plaintext of the
failing chunk: its sink may hold only whole chunks that precede it.
"""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from counting import CountingSuite
from strongroom.cipher_suite import CipherSuite, ReadableBuffer
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyUnavailableError,
    UsageError,
)
from strongroom.formats import (
    ChunkedReader,
    ChunkedWriter,
    Context,
    Manifest,
    decrypt_stream,
    encrypt_stream,
    manifest_of,
    peek_key_version,
)
from strongroom.formats._fixed import fixed_randomness
from strongroom.formats.chunked import HEADER_SIZE, TAG_SIZE
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305
from strongroom_plugins.ciphers.xchacha import XChaCha20Poly1305

SUITES = [Aes256Gcm, ChaCha20Poly1305, XChaCha20Poly1305]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONTEXT = Context(account="alice", store="files", record="holiday.mov")
CS = 4096
STRIDE = CS + TAG_SIZE
SIZES = [0, 1, CS - 1, CS, CS + 1, 3 * CS]
#: The size from which writes go through worker threads.
THREADED_CS = 256 << 10

KeyFor = Callable[[int], tuple[CipherSuite, bytes]]


@pytest.fixture(params=SUITES, ids=lambda cls: cls.name)
def suite(request: pytest.FixtureRequest) -> CipherSuite:
    suite_class: type[CipherSuite] = request.param
    return suite_class()


def lookup(suite: CipherSuite, key: bytes = KEY) -> KeyFor:
    """A ``key_for`` that gives ``key`` for every version, so only the data can refuse."""

    def key_for(_version: int) -> tuple[CipherSuite, bytes]:
        return suite, key

    return key_for


def pattern(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def encrypt(
    suite: CipherSuite,
    plaintext: bytes,
    *,
    chunk_size: int = CS,
    key: bytes = KEY,
    key_version: int = 1,
    context: Context = CONTEXT,
) -> bytes:
    sink = io.BytesIO()
    encrypt_stream(
        io.BytesIO(plaintext), sink, suite, key, key_version, context, chunk_size=chunk_size
    )
    return sink.getvalue()


def chunks_of(blob: bytes, chunk_size: int = CS) -> tuple[bytes, list[bytes]]:
    """Split a chunked object into its header and stored chunks."""
    stride = chunk_size + TAG_SIZE
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + stride] for i in range(0, len(body), stride)]


def assert_refused(
    blob: bytes,
    key_for: KeyFor,
    plaintext: bytes,
    *,
    context: Context = CONTEXT,
    chunk_size: int = CS,
    failing_chunk: int | None = None,
) -> None:
    """Both decryptors refuse ``blob``; ``decrypt_stream`` wrote only whole earlier chunks.

    ``failing_chunk`` pins the sink to exactly the chunks before it (``0``
    for an empty sink); otherwise any whole-chunk prefix of the plaintext
    is accepted.
    """
    sink = io.BytesIO()
    with pytest.raises(IntegrityError):
        decrypt_stream(io.BytesIO(blob), sink, key_for, context)
    written = sink.getvalue()
    assert written == plaintext[: len(written)]
    assert len(written) % chunk_size == 0
    assert len(written) < max(len(plaintext), 1)
    if failing_chunk is not None:
        assert len(written) == failing_chunk * chunk_size
    with pytest.raises(IntegrityError):
        read_every_chunk(blob, key_for, context)


def read_every_chunk(blob: bytes, key_for: KeyFor, context: Context) -> None:
    reader = ChunkedReader(io.BytesIO(blob), key_for, context)
    for index in range(reader.chunk_count):
        reader.read_chunk(index)


class TrickleSource:
    """A non-seekable source that only has ``read`` and returns short pieces."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data = io.BytesIO(data)
        self._random = random.Random(seed)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, self._random.randint(1, 700)))


class ShortReads(io.RawIOBase):
    """A non-seekable raw stream whose ``readinto`` returns short counts."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(memoryview(buffer)[:1000])


class SpySource(io.BytesIO):
    """Records the offset of every read, to see which chunks were touched."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads.append(self.tell())
        return super().readinto(buffer)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_every_way(suite: CipherSuite, size: int) -> None:
    plaintext = pattern(size)
    blob = encrypt(suite, plaintext)
    expected_chunks = max(1, -(-size // CS))
    assert len(blob) == HEADER_SIZE + size + expected_chunks * TAG_SIZE

    sink = io.BytesIO()
    assert decrypt_stream(io.BytesIO(blob), sink, lookup(suite), CONTEXT) == size
    assert sink.getvalue() == plaintext

    reader = ChunkedReader(io.BytesIO(blob), lookup(suite), CONTEXT)
    assert (reader.chunk_count, reader.plaintext_size) == (expected_chunks, size)
    assert (reader.chunk_size, reader.key_version) == (CS, 1)
    assert b"".join(reader.iter_chunks()) == plaintext
    assert reader.read_at(0, size + 10) == plaintext
    buffer = bytearray(CS)
    last = reader.chunk_count - 1
    length = reader.readinto_chunk(last, buffer)
    assert bytes(buffer[:length]) == plaintext[last * CS :]

    assert decrypt_stream(TrickleSource(blob), io.BytesIO(), lookup(suite), CONTEXT) == size
    assert peek_key_version(blob) == 1


@pytest.mark.parametrize("size", SIZES)
def test_writer_matches_encrypt_stream_for_any_write_pattern(size: int) -> None:
    suite = Aes256Gcm()
    plaintext = pattern(size, seed=size)
    salt = bytes(range(32))
    expected_sink = io.BytesIO()
    with fixed_randomness(salt=salt):
        expected_manifest = encrypt_stream(
            io.BytesIO(plaintext),
            expected_sink,
            suite,
            KEY,
            3,
            CONTEXT,
            chunk_size=CS,
            manifest=True,
        )
    splitter = random.Random(size)
    for pieces in ("whole", "bytes", "random", "chunks"):
        sink = io.BytesIO()
        with fixed_randomness(salt=salt):
            writer = ChunkedWriter(sink, suite, KEY, 3, CONTEXT, chunk_size=CS, manifest=True)
        with writer:
            if pieces == "whole":
                writer.write(plaintext)
            elif pieces == "bytes":
                for offset in range(min(size, 3 * CS)):
                    writer.write(plaintext[offset : offset + 1])
                writer.write(plaintext[3 * CS :])
            elif pieces == "random":
                offset = 0
                while offset < size:
                    step = splitter.randint(0, 2 * CS + 5)
                    writer.write(memoryview(plaintext)[offset : offset + step])
                    offset += step
            else:
                for offset in range(0, size, CS):
                    writer.write(plaintext[offset : offset + CS])
        assert sink.getvalue() == expected_sink.getvalue(), pieces
        assert writer.close() == expected_manifest, pieces


def test_exact_multiple_ends_with_a_full_last_chunk() -> None:
    suite = Aes256Gcm()
    _, chunks = chunks_of(encrypt(suite, pattern(3 * CS)))
    assert [len(chunk) for chunk in chunks] == [STRIDE] * 3
    _, chunks = chunks_of(encrypt(suite, b""))
    assert [len(chunk) for chunk in chunks] == [TAG_SIZE]


def test_header_layout() -> None:
    suite = XChaCha20Poly1305()
    blob = encrypt(suite, b"x", chunk_size=65536, key_version=0xA1B2C3D4)
    assert blob[:4] == b"SRck"
    assert blob[4] == 1
    assert blob[5:7] == b"\x00\x03"
    assert blob[7:11] == bytes.fromhex("a1b2c3d4")
    assert blob[11:15] == (65536).to_bytes(4, "big")
    assert HEADER_SIZE == 79


def test_threaded_writes_round_trip_and_stay_in_order(suite: CipherSuite) -> None:
    """From 256 KiB chunks on, writes and hashes happen on worker threads."""
    plaintext = pattern(4 * THREADED_CS + 1234)
    sink = io.BytesIO()
    manifest = encrypt_stream(
        io.BytesIO(plaintext), sink, suite, KEY, 1, CONTEXT, chunk_size=THREADED_CS, manifest=True
    )
    blob = sink.getvalue()
    assert manifest == manifest_of(io.BytesIO(blob))
    assert manifest.chunk_count == 5
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, lookup(suite), CONTEXT)
    assert out.getvalue() == plaintext
    writer = ChunkedWriter(io.BytesIO(), suite, KEY, 1, CONTEXT, chunk_size=THREADED_CS)
    with writer:
        writer.write(plaintext)
    assert writer.close() is None  # no manifest unless asked for


def test_threaded_decrypt_writes_nothing_of_the_failing_chunk() -> None:
    suite = Aes256Gcm()
    plaintext = pattern(5 * THREADED_CS)
    blob = encrypt(suite, plaintext, chunk_size=THREADED_CS)
    offset = HEADER_SIZE + 3 * (THREADED_CS + TAG_SIZE) + 17
    tampered = blob[:offset] + bytes([blob[offset] ^ 1]) + blob[offset + 1 :]
    assert_refused(tampered, lookup(suite), plaintext, chunk_size=THREADED_CS, failing_chunk=3)


def test_sources_without_seek_or_with_short_reads() -> None:
    suite = ChaCha20Poly1305()
    plaintext = pattern(3 * CS + 77)
    sink = io.BytesIO()
    encrypt_stream(TrickleSource(plaintext, seed=1), sink, suite, KEY, 1, CONTEXT, chunk_size=CS)
    blob = sink.getvalue()
    assert blob[HEADER_SIZE:] == encrypt_with_salt_of(blob, suite, plaintext)[HEADER_SIZE:]
    out = io.BytesIO()
    decrypt_stream(ShortReads(blob), out, lookup(suite), CONTEXT)
    assert out.getvalue() == plaintext
    with pytest.raises(UsageError):
        ChunkedReader(ShortReads(blob), lookup(suite), CONTEXT)


def encrypt_with_salt_of(blob: bytes, suite: CipherSuite, plaintext: bytes) -> bytes:
    sink = io.BytesIO()
    with fixed_randomness(salt=blob[15:47]):
        encrypt_stream(io.BytesIO(plaintext), sink, suite, KEY, 1, CONTEXT, chunk_size=CS)
    return sink.getvalue()


def test_reader_starts_where_the_source_is() -> None:
    suite = Aes256Gcm()
    plaintext = pattern(2 * CS + 5)
    source = io.BytesIO(b"some prefix" + encrypt(suite, plaintext))
    source.seek(len(b"some prefix"))
    reader = ChunkedReader(source, lookup(suite), CONTEXT)
    assert reader.read_at(CS - 2, 10) == plaintext[CS - 2 : CS + 8]


# random access


# Hypothesis caches under ./.hypothesis/ as soon as a test module using it
# is collected, even without an example database; the project's
# norecursedirs (which replaces pytest's defaults) then trips over it.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "strongroom-hypothesis")

READ_AT_PLAINTEXT = pattern(7 * CS + 123, seed=7)
READ_AT_BLOB = encrypt(Aes256Gcm(), READ_AT_PLAINTEXT)


@settings(max_examples=150, deadline=None, database=None)
@given(offset=st.integers(0, len(READ_AT_PLAINTEXT) + 50), size=st.integers(0, 3 * CS + 50))
def test_read_at_matches_the_plaintext(offset: int, size: int) -> None:
    source = SpySource(READ_AT_BLOB)
    reader = ChunkedReader(source, lookup(Aes256Gcm()), CONTEXT)
    source.reads.clear()
    assert reader.read_at(offset, size) == READ_AT_PLAINTEXT[offset : offset + size]
    end = min(offset + size, len(READ_AT_PLAINTEXT))
    needed = range(offset // CS, (end - 1) // CS + 1) if offset < end else range(0)
    assert source.reads == [HEADER_SIZE + index * STRIDE for index in needed]


def test_reader_is_checked_for_length_up_front() -> None:
    """The reader authenticates the last chunk on construction: sizes are trustworthy."""
    suite = Aes256Gcm()
    source = SpySource(READ_AT_BLOB)
    reader = ChunkedReader(source, lookup(suite), CONTEXT)
    assert source.reads == [0, HEADER_SIZE + (reader.chunk_count - 1) * STRIDE]
    with pytest.raises(UsageError):
        reader.read_at(-1, 3)
    with pytest.raises(IndexError):
        reader.read_chunk(reader.chunk_count)
    with pytest.raises(UsageError):
        reader.readinto_chunk(0, bytearray(CS - 1))
    assert reader.read_at(len(READ_AT_PLAINTEXT), 10) == b""


# the manifest


@pytest.mark.parametrize("size", SIZES)
def test_manifest_describes_the_stored_bytes(size: int) -> None:
    suite = Aes256Gcm()
    plaintext = pattern(size)
    sink = io.BytesIO()
    manifest = encrypt_stream(
        io.BytesIO(plaintext), sink, suite, KEY, 1, CONTEXT, chunk_size=CS, manifest=True
    )
    blob = sink.getvalue()
    header, chunks = chunks_of(blob)
    assert manifest.header_sha256 == hashlib.sha256(header).digest()
    assert manifest.chunk_sha256 == tuple(hashlib.sha256(chunk).digest() for chunk in chunks)
    assert (manifest.chunk_size, manifest.total_size) == (CS, len(blob))
    assert manifest_of(io.BytesIO(blob)) == manifest
    assert manifest_of(TrickleSource(blob)) == manifest
    encoded = manifest.to_bytes()
    assert encoded[:5] == b"SRmf\x01"
    assert int.from_bytes(encoded[5:9], "big") == len(chunks)
    assert len(encoded) == 53 + 32 * len(chunks)
    assert Manifest.from_bytes(encoded) == manifest
    for index, chunk in enumerate(chunks):
        offset, length = manifest.chunk_span(index)
        assert blob[offset : offset + length] == chunk


def test_the_manifest_is_opt_in_and_changes_no_byte() -> None:
    suite = Aes256Gcm()
    plaintext = pattern(3 * CS + 1)
    salt = bytes(32)
    with_manifest, without = io.BytesIO(), io.BytesIO()
    with fixed_randomness(salt=salt):
        manifest = encrypt_stream(
            io.BytesIO(plaintext),
            with_manifest,
            suite,
            KEY,
            1,
            CONTEXT,
            chunk_size=CS,
            manifest=True,
        )
    with fixed_randomness(salt=salt):
        skipped = encrypt_stream(
            io.BytesIO(plaintext), without, suite, KEY, 1, CONTEXT, chunk_size=CS
        )
    assert skipped is None
    assert without.getvalue() == with_manifest.getvalue()
    assert manifest_of(io.BytesIO(without.getvalue())) == manifest


def test_malformed_manifests_are_refused() -> None:
    blob = encrypt(Aes256Gcm(), pattern(2 * CS))
    encoded = manifest_of(io.BytesIO(blob)).to_bytes()
    for bad in (
        b"",
        b"SRmx" + encoded[4:],
        encoded[:4] + b"\x02" + encoded[5:],
        encoded[:-1],
        encoded + bytes(32),
        encoded[:5] + (3).to_bytes(4, "big") + encoded[9:] + bytes(32),  # count vs total size
    ):
        with pytest.raises(IntegrityError):
            Manifest.from_bytes(bad)
    for short in (b"", blob[:50], blob[: HEADER_SIZE + 5], blob[: -STRIDE + 3]):
        with pytest.raises(IntegrityError):
            manifest_of(io.BytesIO(short))


# tampering: header


def test_every_header_byte_is_authenticated(suite: CipherSuite) -> None:
    plaintext = pattern(2 * CS + 100)
    blob = encrypt(suite, plaintext)
    for position in range(HEADER_SIZE):
        altered = bytearray(blob)
        altered[position] ^= 1 << (position % 8)
        assert_refused(bytes(altered), lookup(suite), plaintext, failing_chunk=0)


def test_unknown_magic_and_version_are_named() -> None:
    suite = Aes256Gcm()
    blob = encrypt(suite, b"data")
    with pytest.raises(IntegrityError, match=r"^not a strongroom chunked object$") as caught:
        decrypt_stream(io.BytesIO(b"SRsl" + blob[4:]), io.BytesIO(), lookup(suite), CONTEXT)
    assert not isinstance(caught.value, AuthenticationError)
    with pytest.raises(IntegrityError, match=r"^unsupported format version 7$"):
        ChunkedReader(io.BytesIO(blob[:4] + b"\x07" + blob[5:]), lookup(suite), CONTEXT)


# tampering: body


def test_bit_flips_in_the_body(suite: CipherSuite) -> None:
    plaintext = pattern(3 * CS + 500)
    blob = encrypt(suite, plaintext)
    randomly = random.Random(11)
    positions = {HEADER_SIZE + i * STRIDE + edge for i in range(4) for edge in (0, CS - 1, CS)}
    positions |= {randomly.randrange(HEADER_SIZE, len(blob)) for _ in range(20)}
    positions = {position for position in positions if position < len(blob)}
    positions.add(len(blob) - 1)
    for position in sorted(positions):
        altered = bytearray(blob)
        altered[position] ^= 1 << randomly.randrange(8)
        failing = (position - HEADER_SIZE) // STRIDE
        assert_refused(bytes(altered), lookup(suite), plaintext, failing_chunk=failing)
        if failing < 3:  # the last chunk is intact: the other chunks still read
            reader = ChunkedReader(io.BytesIO(bytes(altered)), lookup(suite), CONTEXT)
            with pytest.raises(AuthenticationError):
                reader.read_chunk(failing)
            assert reader.read_chunk(3) == plaintext[3 * CS :]


def test_truncation_at_and_inside_every_chunk(suite: CipherSuite) -> None:
    plaintext = pattern(3 * CS + 500)
    blob = encrypt(suite, plaintext)
    lengths = {0, 1, 4, 5, 11, 15, 47, HEADER_SIZE - 1, HEADER_SIZE}
    for index in range(1, 5):
        boundary = min(HEADER_SIZE + index * STRIDE, len(blob))
        lengths |= {boundary - 17, boundary - 16, boundary - 15, boundary - 1}
        lengths |= {boundary - STRIDE // 2, boundary}
    lengths |= {HEADER_SIZE + 1, HEADER_SIZE + 15, HEADER_SIZE + 16}
    lengths.discard(len(blob))
    for length in sorted(lengths):
        assert_refused(blob[:length], lookup(suite), plaintext)


def test_truncation_of_an_exact_multiple_at_a_boundary() -> None:
    """Dropping a whole last chunk leaves a valid-looking body of full chunks."""
    suite = Aes256Gcm()
    plaintext = pattern(3 * CS)
    blob = encrypt(suite, plaintext)
    assert_refused(blob[: HEADER_SIZE + 2 * STRIDE], lookup(suite), plaintext, failing_chunk=1)


def test_dropped_reordered_and_duplicated_chunks(suite: CipherSuite) -> None:
    plaintext = pattern(4 * CS + 9)
    blob = encrypt(suite, plaintext)
    header, chunks = chunks_of(blob)
    last = len(chunks) - 1
    variants: dict[str, tuple[list[bytes], int]] = {}
    for index in range(len(chunks)):
        # Without its last chunk, the object fails at the new last one, which lacks the flag.
        variants[f"drop {index}"] = (chunks[:index] + chunks[index + 1 :], min(index, last - 1))
        # A duplicated last chunk fails where it stands, flagged last but not the last.
        variants[f"duplicate {index}"] = (
            chunks[: index + 1] + chunks[index:],
            min(index + 1, last),
        )
    variants["swap 0 1"] = ([chunks[1], chunks[0], *chunks[2:]], 0)
    variants["swap 2 3"] = ([*chunks[:2], chunks[3], chunks[2], chunks[4]], 2)
    variants["last first"] = ([chunks[-1], *chunks[:-1]], 0)
    variants["reversed"] = (chunks[::-1], 0)
    for name, (altered, failing) in variants.items():
        try:
            assert_refused(
                header + b"".join(altered), lookup(suite), plaintext, failing_chunk=failing
            )
        except AssertionError as error:
            raise AssertionError(name) from error


def test_appended_bytes(suite: CipherSuite) -> None:
    plaintext = pattern(2 * CS + 3)
    blob = encrypt(suite, plaintext)
    _, chunks = chunks_of(blob)
    for extra in (b"\x00", bytes(15), bytes(16), bytes(STRIDE), chunks[-1], chunks[0]):
        assert_refused(blob + extra, lookup(suite), plaintext)
    exact = pattern(2 * CS)
    exact_blob = encrypt(suite, exact)
    for extra in (bytes(16), encrypt(suite, b"")[HEADER_SIZE:]):
        assert_refused(exact_blob + extra, lookup(suite), exact, failing_chunk=1)


def test_chunks_swapped_between_objects_under_one_key(suite: CipherSuite) -> None:
    first_plain, second_plain = pattern(3 * CS, seed=1), pattern(3 * CS, seed=2)
    first, second = encrypt(suite, first_plain), encrypt(suite, second_plain)
    header, first_chunks = chunks_of(first)
    _, second_chunks = chunks_of(second)
    for index in range(3):
        mixed = list(first_chunks)
        mixed[index] = second_chunks[index]
        assert_refused(header + b"".join(mixed), lookup(suite), first_plain, failing_chunk=index)
    # The second object's header with the first one's body: the salt differs.
    assert_refused(second[:HEADER_SIZE] + first[HEADER_SIZE:], lookup(suite), second_plain)


# tampering: identity and keys


@pytest.mark.parametrize(
    "other",
    [
        Context(account="mallory", store="files", record="holiday.mov"),
        Context(account="alice", store="notes", record="holiday.mov"),
        Context(account="alice", store="files", record="holiday2.mov"),
    ],
    ids=["account", "store", "record"],
)
def test_moving_to_another_identity_fails(suite: CipherSuite, other: Context) -> None:
    plaintext = pattern(CS + 1)
    blob = encrypt(suite, plaintext)
    assert_refused(blob, lookup(suite), plaintext, context=other, failing_chunk=0)


def test_relabelled_key_version_fails(suite: CipherSuite) -> None:
    plaintext = pattern(CS + 1)
    blob = encrypt(suite, plaintext, key_version=5)
    relabelled = blob[:7] + (6).to_bytes(4, "big") + blob[11:]
    assert_refused(relabelled, lookup(suite), plaintext, failing_chunk=0)

    def key_for(version: int) -> tuple[CipherSuite, bytes]:
        return suite, KEY if version == 5 else OTHER_KEY

    assert_refused(relabelled, key_for, plaintext, failing_chunk=0)


def test_wrong_key_fails_before_any_decryption() -> None:
    counting = CountingSuite()
    plaintext = pattern(2 * CS)
    blob = encrypt(counting, plaintext)
    assert_refused(blob, lookup(counting, OTHER_KEY), plaintext, failing_chunk=0)
    assert counting.decryptions == 0


def test_rewritten_commitment_does_not_open_under_another_key() -> None:
    counting = CountingSuite()
    plaintext = pattern(2 * CS)
    blob = encrypt(counting, plaintext)
    salt = blob[15:47]
    sink = io.BytesIO()
    with fixed_randomness(salt=salt):
        encrypt_stream(io.BytesIO(b""), sink, counting, OTHER_KEY, 1, CONTEXT, chunk_size=CS)
    forged = blob[:47] + sink.getvalue()[47:79] + blob[HEADER_SIZE:]
    out = io.BytesIO()
    with pytest.raises(AuthenticationError):
        decrypt_stream(io.BytesIO(forged), out, lookup(counting, OTHER_KEY), CONTEXT)
    assert out.getvalue() == b""
    assert counting.decryptions == 1  # the commitment passed; the first chunk's tag did not


def test_suite_other_than_the_header_fails() -> None:
    plaintext = pattern(100)
    blob = encrypt(Aes256Gcm(), plaintext)
    assert_refused(blob, lookup(ChaCha20Poly1305()), plaintext, failing_chunk=0)


def test_key_for_errors_propagate_unchanged() -> None:
    destroyed = KeyUnavailableError("version 1 was destroyed")

    def key_for(_version: int) -> tuple[CipherSuite, bytes]:
        raise destroyed

    blob = encrypt(Aes256Gcm(), b"data")
    with pytest.raises(KeyUnavailableError) as caught:
        decrypt_stream(io.BytesIO(blob), io.BytesIO(), key_for, CONTEXT)
    assert caught.value is destroyed
    with pytest.raises(KeyUnavailableError):
        ChunkedReader(io.BytesIO(blob), key_for, CONTEXT)


# the writer's life cycle and arguments


def test_writer_left_by_an_exception_is_unfinished() -> None:
    suite = Aes256Gcm()
    sink = io.BytesIO()
    w = ChunkedWriter(sink, suite, KEY, 1, CONTEXT, chunk_size=CS)

    def fail_while_writing() -> None:
        with w:
            w.write(pattern(3 * CS + 1))
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fail_while_writing()
    with pytest.raises(UsageError):
        w.write(b"more")
    with pytest.raises(UsageError):
        w.close()
    with pytest.raises(AuthenticationError):
        decrypt_stream(io.BytesIO(sink.getvalue()), io.BytesIO(), lookup(suite), CONTEXT)


def test_writer_close_is_idempotent_and_final() -> None:
    suite = Aes256Gcm()
    writer = ChunkedWriter(io.BytesIO(), suite, KEY, 1, CONTEXT, chunk_size=CS, manifest=True)
    writer.write(b"abc")
    manifest = writer.close()
    assert manifest is not None
    assert writer.close() is manifest
    with pytest.raises(UsageError):
        writer.write(b"more")
    assert "key hidden" in repr(writer)


def test_bad_arguments_are_usage_errors() -> None:
    suite = Aes256Gcm()
    for chunk_size in (0, 4095, (64 << 20) + 1):
        with pytest.raises(UsageError):
            ChunkedWriter(io.BytesIO(), suite, KEY, 1, CONTEXT, chunk_size=chunk_size)
    with pytest.raises(UsageError):
        ChunkedWriter(io.BytesIO(), suite, KEY[:16], 1, CONTEXT)
    with pytest.raises(UsageError):
        ChunkedWriter(io.BytesIO(), suite, KEY, 2**32, CONTEXT)

    class LongTags(Aes256Gcm):
        tag_size = 32

    with pytest.raises(UsageError):
        ChunkedWriter(io.BytesIO(), LongTags(), KEY, 1, CONTEXT)


def test_chunk_size_limits_are_accepted() -> None:
    suite = Aes256Gcm()
    for chunk_size in (4096, 4097, 1_000_003):
        plaintext = pattern(chunk_size + 1)
        blob = encrypt(suite, plaintext, chunk_size=chunk_size)
        reader = ChunkedReader(io.BytesIO(blob), lookup(suite), CONTEXT)
        assert reader.chunk_count == 2
        assert reader.read_at(chunk_size - 1, 2) == plaintext[-2:]


class FailingSink(io.BytesIO):
    """Accepts ``good_writes`` writes, then raises on every later one."""

    def __init__(self, good_writes: int) -> None:
        super().__init__()
        self.good_writes = good_writes
        self.attempts = 0

    def write(self, data: ReadableBuffer, /) -> int:  # type: ignore[override]
        self.attempts += 1
        if self.attempts > self.good_writes:
            raise OSError("disk full")
        return super().write(data)


@pytest.mark.parametrize("chunk_size", [CS, THREADED_CS], ids=["inline", "threaded"])
def test_a_failing_sink_stops_the_stream(chunk_size: int) -> None:
    suite = Aes256Gcm()
    plaintext = pattern(6 * chunk_size)
    sink = FailingSink(good_writes=3)  # the header and two chunks
    with pytest.raises(OSError, match="disk full"):
        encrypt_stream(io.BytesIO(plaintext), sink, suite, KEY, 1, CONTEXT, chunk_size=chunk_size)
    assert len(sink.getvalue()) == HEADER_SIZE + 2 * (chunk_size + TAG_SIZE)
    assert sink.attempts <= 4  # nothing was written after the failure

    blob = encrypt(suite, plaintext, chunk_size=chunk_size)
    out = FailingSink(good_writes=2)
    with pytest.raises(OSError, match="disk full"):
        decrypt_stream(io.BytesIO(blob), out, lookup(suite), CONTEXT)
    assert out.getvalue() == plaintext[: 2 * chunk_size]
    assert out.attempts <= 3
