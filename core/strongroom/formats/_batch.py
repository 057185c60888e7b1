"""Sealed objects in batches: one HKDF subkey serves many objects, and readers cache it.

Deriving a key per object (HKDF, a new keyed AEAD, a commitment) costs
several times the AEAD call on a 1 KiB record, so sealed format version 2
derives per *batch* (``docs/formats.md``, "Sealed objects"):

- a writer draws a random 256-bit salt and a random nonce prefix, derives
  ``subkey || commitment`` once, and seals at most :data:`BATCH_LIMIT`
  objects with ``nonce = prefix || u32 counter``, then starts a new batch.
  Each thread has its own batch, and a forked child never continues one
  its parent began, so no (subkey, nonce) pair is ever used twice;
- a reader keeps the subkeys it has verified, keyed by salt *and*
  commitment, in a small LRU: a hit skips HKDF, and a header whose
  commitment differs from a verified one is a miss, derived and refused.
  The subkey it used last is compared first, without the lock: a reader
  of one batch pays one bytes comparison for its commitment check.

A :class:`Subkeys` belongs to one data key version.  :meth:`Subkeys.clear`
drops every subkey when that key is wiped; the key hierarchy hangs one on
each unlocked ``DataKey`` for that reason.
"""

from __future__ import annotations

import hmac
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer, UncheckedDecrypt
from strongroom.errors import AuthenticationError, UsageError
from strongroom.formats._derive import (
    COMMITMENT_SIZE,
    PREFIX_SIZE,
    SALT_SIZE,
    check_key_version,
    new_salt,
    pack_prefix,
)
from strongroom.formats._fixed import fixed
from strongroom.formats.context import Context
from strongroom.secret import Secret

__all__ = [
    "BATCH_LIMIT",
    "CACHE_SIZE",
    "COUNTER_SIZE",
    "HEAD_SIZE",
    "MAGIC",
    "VERSION",
    "Subkeys",
    "derive_subkey",
    "verify_subkey",
]

MAGIC = b"SRsl"
VERSION = 2
#: Objects a batch seals at most before its writer draws a new salt.
BATCH_LIMIT = 1 << 16
#: Verified subkeys a reader keeps per data key version.
CACHE_SIZE = 128
#: A writer's nonce is the batch's random prefix then this many bytes of counter.
COUNTER_SIZE = 4
#: Prefix (11), salt (32), commitment (32): the header up to the nonce.
HEAD_SIZE = PREFIX_SIZE + SALT_SIZE + COMMITMENT_SIZE
#: What a version 2 header starts with.
V2_START = MAGIC + bytes([VERSION])
_INFO = b"strongroom/v1/batch/"
#: A keyed AEAD's ``encrypt`` or ``decrypt``: ``(nonce, data, aad) -> bytes``.
Crypt = Callable[[bytes, ReadableBuffer, bytes], bytes]
#: Where an object's nonce, body and header (up to the end of the nonce) lie.
_Pieces = tuple[slice, slice, slice]
#: The subkey a reader used last: the ``salt || commitment`` it verified, the
#: subkey's decrypt and refusals (``_reader``), and the suite's ``_Pieces``.
_Opener = tuple[bytes, Crypt, tuple[type[Exception], ...], slice, slice, slice]
_SHA256 = hashes.SHA256()


def derive_subkey(
    suite: CipherSuite, data_key: ReadableBuffer, salt: bytes
) -> tuple[KeyedAead, bytes]:
    """The keyed AEAD and the commitment of the batch with ``salt``.

    :raises strongroom.errors.UsageError: ``data_key`` is shorter than the
        suite's key size.
    """
    if len(data_key) < suite.key_size:
        raise UsageError(f"a data key for {suite.name} is at least {suite.key_size} bytes")
    info = _INFO + suite.code.to_bytes(2, "big")
    length = suite.key_size + COMMITMENT_SIZE
    okm = HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(data_key)
    return suite.keyed(okm[: suite.key_size]), okm[suite.key_size :]


def verify_subkey(
    suite: CipherSuite, data_key: ReadableBuffer, salt_and_commitment: bytes
) -> KeyedAead:
    """The AEAD of the batch whose header holds ``salt || commitment``, once the commitment matches.

    :raises strongroom.errors.AuthenticationError: it does not: another data
        key, or an altered salt or commitment.
    """
    aead, commitment = derive_subkey(suite, data_key, salt_and_commitment[:SALT_SIZE])
    if not hmac.compare_digest(commitment, salt_and_commitment[SALT_SIZE:]):
        raise AuthenticationError
    return aead


class _Batch:
    """One writer thread's salt, subkey, header start and nonce counter."""

    __slots__ = ("base", "encrypt", "head", "indices", "nonce_size")

    def __init__(self, aead: KeyedAead | None, head: bytes, prefix: bytes, limit: int) -> None:
        self.encrypt: Crypt = aead.encrypt if aead is not None else _never
        self.head = head
        self.nonce_size = len(prefix) + COUNTER_SIZE
        self.base = int.from_bytes(prefix, "big") << (8 * COUNTER_SIZE)
        self.indices: Iterator[int] = iter(range(limit))


def _never(nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
    raise AssertionError("the spent batch has no nonces left")  # pragma: no cover


def _refuse(nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
    raise AuthenticationError  # pragma: no cover - no header's salt and commitment are empty


#: No subkey used yet: no header's ``salt || commitment`` is empty.
_NO_OPENER: _Opener = (b"", _refuse, (), slice(0), slice(0), slice(0))


#: Every thread starts on this empty batch, and a cleared ``Subkeys`` puts it back.
_SPENT = _Batch(None, b"", b"", 0)


class _Writer(threading.local):
    batch = _SPENT


#: Every ``Subkeys`` alive, so that a forked child drops the batches it inherited.
_LIVE: weakref.WeakSet[Subkeys] = weakref.WeakSet()


def _forked() -> None:
    """In a new child: never continue a parent's batch, never wait on a parent's thread."""
    for subkeys in list(_LIVE):
        subkeys._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Subkeys:
    """The subkeys one data key version seals and opens sealed objects with.

    Safe to share between threads.  ``key`` is a :class:`~strongroom.secret.Secret`
    (read again at every derivation, so a wiped one fails closed) or the key
    bytes themselves.  Test vectors fix the first batch's salt and nonce
    prefix with :func:`strongroom.formats._fixed.fixed_randomness`.

    :func:`~strongroom.formats.open_sealed` reads ``_last`` and calls
    :meth:`_lookup` itself, which spares a Python call per object: ``_last``
    is the ``salt || commitment`` a reader verified last and its subkey, and
    a header whose salt and commitment are not those bytes exactly goes
    through :meth:`_lookup`.
    """

    __slots__ = (
        "__weakref__",
        "_cache",
        "_first",
        "_key",
        "_last",
        "_lock",
        "_pieces",
        "_writer",
        "code",
        "key_version",
        "suite",
    )

    def __init__(
        self,
        suite: CipherSuite,
        key: Secret | ReadableBuffer,
        key_version: int,
    ) -> None:
        """:raises strongroom.errors.UsageError: a key version outside u32, or a
        suite whose nonce has no room for a counter."""
        check_key_version(key_version)
        if suite.nonce_size <= COUNTER_SIZE:
            raise UsageError(f"the sealed format needs nonces longer than {COUNTER_SIZE} bytes")
        self.suite = suite
        self.key_version = key_version
        self.code = suite.code
        end = HEAD_SIZE + suite.nonce_size  # of a version 2 header, and the nonce in it
        self._pieces: _Pieces = (slice(HEAD_SIZE, end), slice(end, None), slice(None, end))
        self._key = key
        self._writer = _Writer()
        self._cache: OrderedDict[bytes, UncheckedDecrypt] = OrderedDict()
        self._last = _NO_OPENER
        self._lock = threading.Lock()
        first = fixed()
        self._first = first if first != (None, None) else None
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<Subkeys {self.suite.name} v{self.key_version} (hidden)>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Subkeys hold keys and cannot be pickled")

    def material(self) -> ReadableBuffer:
        """The data key's bytes.

        :raises strongroom.errors.KeyLockedError: the data key was wiped.
        """
        key = self._key
        return key.view() if isinstance(key, Secret) else key

    def seal(self, plaintext: ReadableBuffer, context: Context) -> bytes:
        """Seal ``plaintext`` as a version 2 sealed object in this thread's batch.

        :raises strongroom.errors.UsageError: the data key is shorter than
            the suite's key size.
        :raises strongroom.errors.KeyLockedError: a new batch was due and the
            data key was wiped.
        """
        batch = self._writer.batch
        index = next(batch.indices, None)
        if index is None:
            batch = self._start_batch()
            index = next(batch.indices)
        nonce = (batch.base + index).to_bytes(batch.nonce_size, "big")
        header = batch.head + nonce
        return header + batch.encrypt(nonce, plaintext, header + context._encoded)

    def clear(self) -> None:
        """Forget every subkey: no batch continues, and every reader derives again."""
        with self._lock:
            self._writer = _Writer()
            self._cache.clear()
            self._last = _NO_OPENER

    def _after_fork(self) -> None:
        self._writer = _Writer()
        self._lock = threading.Lock()

    def _lookup(self, salt_and_commitment: bytes) -> _Opener:
        """The cached subkey of this salt and commitment, or one derived and verified now.

        Either way the commitment was compared before the subkey is returned,
        and no AEAD call has been made.  Under the lock, so that :meth:`clear`
        leaves no subkey in ``_last``.

        :raises strongroom.errors.AuthenticationError: the commitment does not match.
        :raises strongroom.errors.KeyLockedError: not cached, and the data key
            was wiped.
        """
        with self._lock:
            cache = self._cache
            found = cache.get(salt_and_commitment)
            if found is None:
                aead = verify_subkey(self.suite, self.material(), salt_and_commitment)
                found = _reader(aead)
                self._remember(salt_and_commitment, found)
            else:
                cache.move_to_end(salt_and_commitment)
            opener = self._last = (salt_and_commitment, *found, *self._pieces)
            return opener

    def _start_batch(self) -> _Batch:
        """A new batch for this thread: fresh salt and nonce prefix, subkey derived once."""
        with self._lock:
            salt, prefix = self._first or (None, None)
            self._first = None
            salt = new_salt(salt)
            prefix = _nonce_prefix(self.suite, prefix)
            aead, commitment = derive_subkey(self.suite, self.material(), salt)
            head = pack_prefix(MAGIC, self.suite, self.key_version, VERSION) + salt + commitment
            self._remember(salt + commitment, _reader(aead))
            batch = _Batch(aead, head, prefix, BATCH_LIMIT)
            self._writer.batch = batch
            return batch

    def _remember(self, salt_and_commitment: bytes, found: UncheckedDecrypt) -> None:
        """Cache a verified subkey; the caller holds the lock."""
        self._cache[salt_and_commitment] = found
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def _reader(aead: KeyedAead) -> UncheckedDecrypt:
    """The subkey's unchecked decrypt, and every exception by which it refuses an object.

    Those are its tag errors and ``ValueError``: the reader lets the AEAD
    refuse a truncated object, whose nonce comes out short (``ValueError``)
    or whose ciphertext is shorter than a tag (a tag error).
    """
    decrypt, tag_errors = aead.unchecked_decrypt()
    return decrypt, (*tag_errors, ValueError)


def _nonce_prefix(suite: CipherSuite, fixed: bytes | None) -> bytes:
    size = suite.nonce_size - COUNTER_SIZE
    if fixed is None:
        return os.urandom(size)
    if len(fixed) != size:
        raise UsageError(f"a nonce prefix for {suite.name} is {size} bytes")
    return bytes(fixed)
