"""``StoreContract``: what every store must do, as pytest tests.

Subclass it and say how to open your store on a binding::

    from strongroom.testing import StoreContract

    class TestMyStore(StoreContract):
        blob_size = 3 * 65536 + 7          # spans several of the store's chunks

        def open_store(self, binding):
            return MyStore(MyStore.Settings(chunk_size=65536), binding=binding)

and hand it a record's raw stored form, which it swaps, alters and replays
(``_store_raw``: the hooks are required, or opted out of visibly)::

        def raw_record(self, store, key):
            return path_of(store, key).read_bytes()

        def put_raw(self, store, key, raw):
            path_of(store, key).write_bytes(raw)

It also scans every file under the store's directory for the record keys
and values it wrote, in the clear or encoded (``_store_leaks``); a store
that writes elsewhere too names those paths in ``stored_paths(store)``.

Each test gets a fresh account in ``tmp_path``: keys created and unlocked
with a :class:`~strongroom.testing.MemoryKeyProvider` and the configured
``suite``, and a store directory made for ``store_name``.  Tests reach the
keys through ``store.binding.keys`` to rotate, destroy and lock them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from strongroom._loading import SLOTS_BY_TABLE, load_backend
from strongroom.cipher_suite import CipherSuite
from strongroom.errors import (
    KeyLockedError,
    KeyUnavailableError,
    RecordNotFoundError,
    UsageError,
)
from strongroom.keys import AccountKeys
from strongroom.store import Store, StoreBinding
from strongroom.testing._store_bulk import BulkContract
from strongroom.testing._store_leaks import LeakContract
from strongroom.testing._store_raw import RawFormContract
from strongroom.testing._store_retention import RetentionContract
from strongroom.testing._store_versions import VersionContract
from strongroom.testing.providers import MemoryKeyProvider

__all__ = ["StoreContract", "make_account_keys", "suite_resolver"]

#: The config name the contract gives its test provider.
PROVIDER_NAME = "memory"


def suite_resolver() -> Callable[[str], CipherSuite]:
    """``name -> CipherSuite`` through the ``strongroom.cipher_suites`` entry points.

    Suites are loaded the way a configured stack loads them, and built once
    per resolver.

    :raises strongroom.errors.PluginError: no suite of that name can be loaded.
    """
    built: dict[str, CipherSuite] = {}

    def resolve(name: str) -> CipherSuite:
        if name not in built:
            backend, _ = load_backend(SLOTS_BY_TABLE["cipher_suite"], name)
            built[name] = cast(CipherSuite, backend())
        return built[name]

    return resolve


def make_account_keys(
    directory: Path,
    *,
    account: str = "alice",
    provider: MemoryKeyProvider | None = None,
    suite: str = "aes-256-gcm",
    notify: Callable[..., Any] | None = None,
    count_objects: Callable[[str, int], int | None] | None = None,
) -> AccountKeys:
    """An :class:`AccountKeys` in ``directory`` with one test provider, not yet created.

    Call ``create()`` on it for a new account, or ``unlock()`` to open one
    that a provider with the same KEK created (in another process, say).
    ``count_objects`` is what retiring and destroying a version consult;
    without it nothing can be counted, so both need ``force=True``.
    """
    return AccountKeys(
        account=account,
        directory=directory,
        providers={PROVIDER_NAME: provider if provider is not None else MemoryKeyProvider()},
        provider_backends={PROVIDER_NAME: "memory (tests only)"},
        suite_for=suite_resolver(),
        default_suite=suite,
        notify=notify if notify is not None else (lambda _hook, **_kwargs: None),
        count_objects=count_objects if count_objects is not None else (lambda _p, _v: None),
    )


def _pieces(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling; the rest last."""
    position, cycle = 0, list(sizes)
    while position < len(data):
        for size in cycle:
            yield data[position : position + size]
            position += size
            if position >= len(data):
                return


def _joined(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


class StoreContract(
    BulkContract, VersionContract, RetentionContract, LeakContract, RawFormContract
):
    """Subclass with :meth:`open_store` (or override the ``store`` fixture).

    ``blob_size`` must exceed the store's chunk size several times over, so
    that streaming is exercised; shrink the store's chunk size in
    :meth:`open_store` rather than growing this.  The tests of counting and
    purging by key version (``VersionContract``) are skipped for a store
    whose ``versions_in_use`` raises ``NotImplementedError``, and those of
    purging by age (``RetentionContract``) for one whose ``purge_expired``
    does.  The attacks on
    stored forms (``RawFormContract``) need :meth:`raw_record` and
    :meth:`put_raw`, and fail without them unless ``raw_forms_unavailable``
    says why they cannot be written; the scans (``LeakContract``) read
    ``binding.directory`` and whatever :meth:`stored_paths` names.
    """

    account: ClassVar[str] = "alice"
    store_name: ClassVar[str] = "notes"
    suite: ClassVar[str] = "aes-256-gcm"
    blob_size: ClassVar[int] = 3 * (1 << 20) + 12345

    def open_store(self, binding: StoreBinding) -> Store:
        """Build the store under test on ``binding``; called again to reopen it."""
        raise NotImplementedError("override open_store() or the store fixture")

    @pytest.fixture
    def counted(self) -> list[Store]:
        """The store under test once open: what retiring and destroying a version count in."""
        return []

    @pytest.fixture
    def account_keys(self, tmp_path: Path, counted: list[Store]) -> Iterator[AccountKeys]:
        def count(purpose: str, version: int) -> int | None:
            stores = [store for store in counted if store.binding.purpose == purpose]
            try:
                return sum(store.versions_in_use().get(version, 0) for store in stores)
            except NotImplementedError:
                return None

        keys = make_account_keys(
            tmp_path / self.account, account=self.account, suite=self.suite, count_objects=count
        )
        keys.create()
        yield keys
        keys.close()

    @pytest.fixture
    def binding(self, account_keys: AccountKeys) -> StoreBinding:
        """The store's directory and keys, its keysets made as ``strongroom init`` makes them."""
        directory = account_keys.directory / "stores" / self.store_name
        directory.mkdir(mode=0o700, parents=True)
        binding = StoreBinding(self.account, self.store_name, directory, account_keys)
        with self.open_store(binding) as store:
            account_keys.ensure(*store.key_purposes)
        return binding

    @pytest.fixture
    def store(self, binding: StoreBinding, counted: list[Store]) -> Iterator[Store]:
        with self.open_store(binding) as store:
            counted.append(store)
            yield store

    def blob(self, seed: int = 0) -> bytes:
        """A blob of ``blob_size`` bytes that differs by ``seed``."""
        pattern = bytes((seed + index) % 251 for index in range(251))
        return (pattern * (self.blob_size // 251 + 1))[: self.blob_size]

    # records

    def test_put_then_get(self, store: Store) -> None:
        store.put("greeting", b"hello")
        assert store.get("greeting") == b"hello"

    def test_put_replaces(self, store: Store) -> None:
        store.put("k", b"first")
        store.put("k", b"second, longer")
        assert store.get("k") == b"second, longer"
        store.put("k", b"")
        assert store.get("k") == b""
        assert list(store.keys()) == ["k"]

    @pytest.mark.parametrize("size", [0, 1, 4096, (2 << 20) + 1])
    def test_value_sizes(self, store: Store, size: int) -> None:
        value = os.urandom(size)
        store.put("v", value)
        got = store.get("v")
        assert isinstance(got, bytes)
        assert got == value

    def test_unicode_and_unusual_keys(self, store: Store) -> None:
        keys = [
            "ключ",
            "日本語/ファイル.txt",
            "emoji 🔐 key",
            "tab\tand\nnewline",
            " leading and trailing ",
            "../../etc/passwd",
            "a" * 1000,
        ]
        for index, key in enumerate(keys):
            store.put(key, key.encode() + bytes([index]))
        for index, key in enumerate(keys):
            assert store.get(key) == key.encode() + bytes([index])
        assert list(store.keys()) == sorted(keys)

    def test_missing_key_raises_record_not_found(self, store: Store) -> None:
        store.put("present", b"x")
        with pytest.raises(RecordNotFoundError):
            store.get("absent")
        with pytest.raises(KeyError):  # RecordNotFoundError is a KeyError too
            store.get("absent")
        with pytest.raises(RecordNotFoundError):
            store.delete("absent")
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_blob("absent"))

    def test_delete(self, store: Store) -> None:
        store.put("a", b"1")
        store.put("b", b"2")
        store.delete("a")
        with pytest.raises(RecordNotFoundError):
            store.get("a")
        assert store.get("b") == b"2"
        assert list(store.keys()) == ["b"]
        with pytest.raises(RecordNotFoundError):
            store.delete("a")

    def test_keys_by_prefix_are_sorted_and_exact(self, store: Store) -> None:
        names = ["b", "a/2", "a", "ab", "a/1", "a/", "A", "é"]
        for name in names:
            store.put(name, b"")
        assert list(store.keys()) == sorted(names)
        assert list(store.keys("a/")) == ["a/", "a/1", "a/2"]
        assert list(store.keys("a")) == ["a", "a/", "a/1", "a/2", "ab"]
        assert list(store.keys("a/1")) == ["a/1"]
        assert list(store.keys("a/10")) == []
        assert list(store.keys("c")) == []

    def test_empty_store_lists_nothing(self, store: Store) -> None:
        assert list(store.keys()) == []

    # blobs

    def test_blob_round_trip_streams_in_and_out(self, store: Store) -> None:
        data = self.blob()
        store.put_blob("big", _pieces(data, [1, 4095, 70000, 12345, 0, 3]))
        stream = store.get_blob("big")
        first = next(stream)
        assert 0 < len(first) < len(data), "a blob larger than a chunk must stream out in pieces"
        assert first + _joined(stream) == data

    def test_empty_and_small_blobs(self, store: Store) -> None:
        store.put_blob("empty", [])
        assert _joined(store.get_blob("empty")) == b""
        store.put_blob("small", [b"abc", b"", b"def"])
        assert _joined(store.get_blob("small")) == b"abcdef"
        assert list(store.keys()) == ["empty", "small"]

    def test_blob_replace_and_delete(self, store: Store) -> None:
        store.put_blob("b", [self.blob(1)])
        store.put_blob("b", [self.blob(2)[:1000]])
        assert _joined(store.get_blob("b")) == self.blob(2)[:1000]
        store.delete("b")
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_blob("b"))
        assert list(store.keys()) == []

    def test_failed_blob_write_keeps_the_old_value(self, store: Store) -> None:
        store.put_blob("b", [b"old value"])
        store.put("r", b"old record")

        def failing() -> Iterator[bytes]:
            yield self.blob()
            raise OSError("source went away")

        for key in ("b", "r"):
            with pytest.raises(OSError, match="source went away"):
                store.put_blob(key, failing())
        assert _joined(store.get_blob("b")) == b"old value"
        assert store.get("r") == b"old record"
        assert list(store.keys()) == ["b", "r"]

    def test_records_and_blobs_share_one_namespace(self, store: Store) -> None:
        store.put("k", b"record")
        store.put_blob("k", [b"blob"])
        with pytest.raises(RecordNotFoundError):
            store.get("k")
        assert _joined(store.get_blob("k")) == b"blob"
        assert list(store.keys()) == ["k"]
        store.put("k", b"record again")
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_blob("k"))
        assert store.get("k") == b"record again"
        assert list(store.keys()) == ["k"]
        store.delete("k")
        assert list(store.keys()) == []

    def test_get_any_reads_whichever_form_a_key_has(self, store: Store) -> None:
        store.put("record", b"a record")
        store.put_blob("blob", [b"a ", b"blob"])
        assert _joined(store.get_any("record")) == b"a record"
        assert _joined(store.get_any("blob")) == b"a blob"
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_any("missing"))

    # keys: rotation, re-encryption, destruction, locking

    def test_rotation_keeps_old_data_and_writes_under_the_new_version(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("old", b"written under v1")
        store.put_blob("old blob", [self.blob(3)])
        assert keys.rotate(purpose) == 2
        store.put("new", b"written under v2")
        store.put_blob("new blob", [self.blob(4)])
        assert store.get("old") == b"written under v1"
        assert _joined(store.get_blob("old blob")) == self.blob(3)
        with pytest.raises(UsageError):  # objects remain under v1, or the store cannot tell
            keys.destroy(purpose, 1)
        keys.destroy(purpose, 1, force=True)  # only what was written before the rotation is lost
        assert store.get("new") == b"written under v2"
        assert _joined(store.get_blob("new blob")) == self.blob(4)

    def test_reencrypt_completes_and_is_idempotent(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        records = {f"r{index}": os.urandom(index * 100) for index in range(6)}
        for key, value in records.items():
            store.put(key, value)
        store.put_blob("blob", [self.blob(5)])
        keys.rotate(purpose)
        progress = list(store.reencrypt())
        assert progress, "reencrypt() reports progress"
        assert progress[-1][0] == progress[-1][1] > 0
        assert [done for done, _ in progress] == sorted(done for done, _ in progress)
        assert len({total for _, total in progress}) == 1
        keys.destroy(purpose, 1, force=True)  # nothing may depend on v1 any more
        for key, value in records.items():
            assert store.get(key) == value
        assert _joined(store.get_blob("blob")) == self.blob(5)
        again = list(store.reencrypt())
        assert not again or again[-1][0] == again[-1][1]
        assert {key: store.get(key) for key in records} == records
        assert list(store.keys()) == sorted([*records, "blob"])

    def test_reencrypt_of_an_empty_store(self, store: Store) -> None:
        progress = list(store.reencrypt())
        assert not progress or progress[-1][0] == progress[-1][1] == 0

    def test_destroyed_key_version_makes_data_unavailable(self, store: Store) -> None:
        keys, purpose = store.binding.keys, store.binding.purpose
        store.put("doomed", b"secret")
        store.put_blob("doomed blob", [b"secret blob"])
        keys.rotate(purpose)
        keys.destroy(purpose, 1, force=True)
        with pytest.raises(KeyUnavailableError):
            store.get("doomed")
        with pytest.raises(KeyUnavailableError):
            _joined(store.get_blob("doomed blob"))

    def test_locked_keys_refuse_everything_until_unlocked(self, store: Store) -> None:
        keys = store.binding.keys
        store.put("k", b"v")
        store.put_blob("b", [b"blob"])
        keys.lock()
        with pytest.raises(KeyLockedError):
            store.get("k")
        with pytest.raises(KeyLockedError):
            store.put("k", b"other")
        with pytest.raises(KeyLockedError):
            list(store.keys())
        with pytest.raises(KeyLockedError):
            store.put_blob("b", [b"other"])
        with pytest.raises(KeyLockedError):
            _joined(store.get_blob("b"))
        with pytest.raises(KeyLockedError):
            list(store.reencrypt())
        keys.unlock()
        assert store.get("k") == b"v"
        assert _joined(store.get_blob("b")) == b"blob"

    # lifecycle

    def test_close_is_idempotent(self, binding: StoreBinding) -> None:
        store = self.open_store(binding)
        store.put("k", b"v")
        store.close()
        store.close()
        with self.open_store(binding) as reopened:
            assert reopened.get("k") == b"v"
        reopened.close()

    def test_two_instances_see_each_others_writes(self, store: Store) -> None:
        with self.open_store(store.binding) as other:
            store.put("from first", b"1")
            other.put_blob("from second", [b"2"])
            assert other.get("from first") == b"1"
            assert _joined(store.get_blob("from second")) == b"2"
            other.delete("from first")
            assert list(store.keys()) == ["from second"]
