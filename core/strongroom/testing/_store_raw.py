"""The part of ``StoreContract`` that attacks a record's stored form: swaps, tampering, replays.

It needs two hooks only the store's author can write, in their subclass of
the contract (they may read and write the store's medium directly)::

    def raw_record(self, store, key):        # the bytes stored for record ``key``
        return (store.binding.directory / name_of(key)).read_bytes()

    def put_raw(self, store, key, raw):      # make ``raw`` the stored form of ``key``
        (store.binding.directory / name_of(key)).write_bytes(raw)

"Raw form" is whatever the store keeps for one record's value that an
attacker with the medium could copy, cut or alter: a file, a column, the
sealed object.  The hooks are required.  A store whose medium cannot be
reached this way (a remote service, say) opts out by setting
``raw_forms_unavailable`` to the reason; its tests are then reported as
skipped with that reason (``pytest -rs``), never passed.  A contract
subclass that does neither fails every test here, naming the hooks.

What a store must do with a raw form that is not the one it wrote:

- **Swapped or moved.** The raw form of another record, or of the same key
  in another store of the account, fails to read with
  :class:`~strongroom.errors.IntegrityError`, and the error carries no
  plaintext: each value is bound to its store and record.
- **Altered.** Any flipped bit, a cut at any length, or an extra byte fails
  with ``IntegrityError``.
- **Replayed.** An older raw form of the same key, put back after the key
  was overwritten, reads back as exactly that older value or fails with
  ``IntegrityError``; never as anything else.  A store cannot refuse it in
  general: without a counter outside the medium an old copy under the same
  key version is as valid as the day it was written.  A store that keeps
  the keyset's floor (``AccountKeys.raise_floor`` after a completed
  re-encryption, ``AccountKeys.floor`` checked on every read) sets
  ``refuses_rollback_after_reencrypt = True`` and is then held to refusing
  a copy older than the last completed pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import ClassVar

import pytest

from strongroom.errors import IntegrityError
from strongroom.store import Store, StoreBinding

__all__ = ["RawFormContract"]

_HOOKS_MISSING = (
    "{cls} must implement raw_record(store, key) and put_raw(store, key, raw), "
    "or set raw_forms_unavailable = '<why>' to skip these tests visibly"
)


def _refused(call: Callable[[], object], *plaintexts: bytes, what: str = "a bad raw form") -> None:
    """``call`` fails with ``IntegrityError``, and its message holds none of ``plaintexts``."""
    try:
        result = call()
    except IntegrityError as error:
        shown = f"{error!s} {error!r}".encode()
        for plaintext in plaintexts:
            assert plaintext not in shown, f"{what}: the error shows plaintext"
        return
    pytest.fail(f"{what}: read as {result!r:.80}")


def _read_any(store: Store, key: str) -> bytes:
    return b"".join(store.get_any(key))


def _altered(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """``raw`` with a bit flipped, cut short or extended, and what was done to it.

    The low and the high bit of every byte are flipped in turn (of a spread
    of bytes if ``raw`` is over 512 bytes long).
    """
    step = 1 if len(raw) <= 512 else len(raw) // 509
    positions = sorted({*range(0, len(raw), step), len(raw) - 1})
    for position in positions:
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[position] ^= bit
            yield f"bit {bit:#x} of byte {position} flipped", bytes(flipped)
    for cut in sorted({0, 1, 4, 11, len(raw) // 2, len(raw) - 16, len(raw) - 1}):
        if 0 <= cut < len(raw):
            yield f"cut to {cut} bytes", raw[:cut]
    yield "one byte appended", raw + b"\0"
    yield "its own start appended", raw + raw[:16]


class RawFormContract:
    """Mixed into ``StoreContract``; uses its fixtures and :meth:`open_store`."""

    #: Why this store cannot hand out a record's raw form; set, the tests here are skipped.
    raw_forms_unavailable: ClassVar[str | None] = None
    #: The store refuses a raw form older than its last completed :meth:`Store.reencrypt`.
    refuses_rollback_after_reencrypt: ClassVar[bool] = False

    def open_store(self, binding: StoreBinding) -> Store:
        raise NotImplementedError  # StoreContract.open_store

    def raw_record(self, store: Store, key: str) -> bytes:
        """The raw stored form of record ``key`` (its file, its column), as bytes."""
        raise NotImplementedError(_HOOKS_MISSING.format(cls=type(self).__name__))

    def put_raw(self, store: Store, key: str, raw: bytes) -> None:
        """Make ``raw`` the stored form of record ``key``, as an attacker with the medium would."""
        raise NotImplementedError(_HOOKS_MISSING.format(cls=type(self).__name__))

    def _raw(self, store: Store, key: str) -> bytes:
        if self.raw_forms_unavailable is not None:
            pytest.skip(f"raw forms unavailable: {self.raw_forms_unavailable}")
        try:
            raw = self.raw_record(store, key)
        except NotImplementedError as exc:
            missing = str(exc)
        else:
            missing = ""
        if missing:
            pytest.fail(missing, pytrace=False)
        assert isinstance(raw, bytes), f"raw_record() gave {type(raw).__name__} for {key!r}"
        assert raw, f"raw_record() gave nothing for {key!r}"
        return raw

    def _other_store(self, store: Store) -> Store:
        """Another store of the same account, its keysets made."""
        binding = store.binding
        directory = binding.directory.with_name(binding.directory.name + "-other")
        directory.mkdir(mode=0o700)
        other = self.open_store(
            StoreBinding(binding.account, binding.name + "-other", directory, binding.keys)
        )
        binding.keys.ensure(*other.key_purposes)
        return other

    def test_the_raw_form_hooks_round_trip(self, store: Store) -> None:
        store.put("k", b"the value")
        raw = self._raw(store, "k")
        assert b"the value" not in raw
        self.put_raw(store, "k", raw)
        assert store.get("k") == b"the value"

    def test_swapped_records_are_refused(self, store: Store) -> None:
        store.put("first", b"first value")
        store.put("second", b"second value")
        first, second = self._raw(store, "first"), self._raw(store, "second")
        self.put_raw(store, "first", second)
        self.put_raw(store, "second", first)
        for key in ("first", "second"):
            _refused(partial(store.get, key), b"first value", b"second value")
            _refused(partial(_read_any, store, key), b"first value", b"second value")
        self.put_raw(store, "first", first)
        assert store.get("first") == b"first value"

    def test_a_record_from_another_store_is_refused(self, store: Store) -> None:
        store.put("k", b"this store's value")
        own = self._raw(store, "k")
        with self._other_store(store) as other:
            other.put("k", b"the other store's value")
            self.put_raw(store, "k", self._raw(other, "k"))
        _refused(lambda: store.get("k"), b"the other store's value")
        self.put_raw(store, "k", own)
        assert store.get("k") == b"this store's value"

    def test_altered_records_are_refused(self, store: Store) -> None:
        value = b"a value long enough to fill a body: " + bytes(range(64))
        store.put("k", value)
        raw = self._raw(store, "k")
        for what, altered in _altered(raw):
            self.put_raw(store, "k", altered)
            _refused(lambda: store.get("k"), value, what=what)
        self.put_raw(store, "k", raw)
        assert store.get("k") == value

    def test_a_replayed_older_form_reads_as_itself_or_is_refused(self, store: Store) -> None:
        store.put("balance", b"100")
        old = self._raw(store, "balance")
        store.put("balance", b"0")
        self.put_raw(store, "balance", old)
        try:
            got = store.get("balance")
        except IntegrityError:
            return
        assert got == b"100", "a replayed raw form must read as the value it was written with"

    def test_a_form_older_than_a_completed_reencryption_is_refused(self, store: Store) -> None:
        if not self.refuses_rollback_after_reencrypt:
            pytest.skip("the store does not claim refuses_rollback_after_reencrypt")
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("balance", b"100")
        old = self._raw(store, "balance")
        store.put("balance", b"0")
        keys.rotate(purpose)
        progress = list(store.reencrypt())
        assert progress[-1][0] == progress[-1][1]
        self.put_raw(store, "balance", old)
        _refused(lambda: store.get("balance"), b"100")
        _refused(partial(_read_any, store, "balance"), b"100")
