"""Using an account's keys: its record, unlocking, and the data keys encryption asks for.

This is the base of :class:`~strongroom.keys.hierarchy.AccountKeys`, which
adds everything that administers the hierarchy (creation, rotation,
retirement, destruction, providers, wipe).  The split keeps the everyday
path a store or command takes through the keys readable on its own.
Keysets are still created here, because the first use of a purpose
creates its keyset.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from strongroom._fs import locked, make_private_dir
from strongroom.backend import Closeable
from strongroom.cipher_suite import CipherSuite
from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    StrongroomError,
    UsageError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.keys._record import (
    RECORD_FILE,
    KeyRecord,
    Keyset,
    KeyState,
    KeyVersion,
    ProviderWrap,
    load_record,
    save_record,
)
from strongroom.keys._session import DataKey, Session
from strongroom.keys._wrapping import MASTER, SuiteResolver, open_data_key, seal_data_key
from strongroom.secret import Secret

__all__ = ["KEY_SIZE", "LOCK_FILE", "KeyAccess", "KeyLookup"]

KEY_SIZE = 32
LOCK_FILE = ".keys.lock"

KeyLookup = Callable[[int], tuple[CipherSuite, memoryview]]


class KeyAccess(Closeable):
    """One account's record, unlocked session and data keys; see ``AccountKeys``."""

    def __init__(
        self,
        *,
        account: str,
        directory: Path,
        providers: Mapping[str, KeyProvider],
        provider_backends: Mapping[str, str],
        suite_for: SuiteResolver,
        default_suite: str,
        notify: Callable[..., Any] = lambda _hook, **_kwargs: None,
        idle_timeout: float | None = None,
    ) -> None:
        self.account = account
        self.directory = directory
        self._providers = dict(providers)
        self._provider_backends = dict(provider_backends)
        self._unlocked_by = ""
        self._suite_for = suite_for
        self._default_suite = default_suite
        self._notify = notify
        self._guard = threading.RLock()
        self._session = Session(account, idle_timeout, self._guard, notify)
        self._cached: tuple[tuple[int, int, int], KeyRecord] | None = None

    # state on disk

    def exists(self) -> bool:
        """Whether the account has a key record."""
        return (self.directory / RECORD_FILE).exists()

    def _read(self) -> KeyRecord:
        """The current record; re-parsed only when the file was replaced.  Do not mutate it."""
        try:
            info = (self.directory / RECORD_FILE).stat()
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
            record = load_record(self.directory)
        except FileNotFoundError:
            raise KeyUnavailableError(
                f"account {self.account!r} has no keys in {self.directory}; run 'strongroom init'"
            ) from None
        if record.account != self.account:
            raise IntegrityError(
                f"{self.directory}: the key record belongs to another account, not {self.account!r}"
            )
        self._cached = (stamp, record)
        return record

    @contextlib.contextmanager
    def _changing(self) -> Iterator[KeyRecord]:
        """Read-modify-write the record under an exclusive lock; written only on success."""
        make_private_dir(self.directory)
        with self._guard, locked(self.directory / LOCK_FILE):
            record = self._read().model_copy(deep=True)
            yield record
            save_record(self.directory, record)

    # locking

    @property
    def unlocked(self) -> bool:
        return self._session.unlocked

    def unlock(self, provider: str | None = None) -> str:
        """Unwrap the master key through ``provider``, or the first that works.

        Returns the config name of the provider that unlocked it.

        :raises strongroom.errors.KeyUnavailableError: no provider could
            unwrap it; the message says what each one answered.
        """
        with self._guard:
            record = self._read()
            if self._session.unlocked and self._session.master_version == record.master_version:
                return self._unlocked_by
            candidates = (
                [provider] if provider else [n for n in self._providers if n in record.wraps]
            )
            if provider and provider not in record.wraps:
                raise UsageError(f"provider {provider!r} does not wrap account {self.account!r}")
            failures: list[tuple[str, StrongroomError]] = []
            for name in candidates:
                try:
                    material = self._provider(name).unwrap(
                        record.wraps[name].blob,
                        WrapContext(self.account, MASTER, record.master_version),
                    )
                except KeyUnavailableError as exc:
                    failures.append((name, exc))
                    continue
                label = f"{self.account} master key v{record.master_version}"
                self._session.start(Secret(bytearray(material), label=label), record.master_version)
                self._unlocked_by = name
                self._notify("strongroom_key_unlocked", account=self.account, provider=name)
                return name
            if not failures:
                raise KeyUnavailableError(
                    f"account {self.account!r}: none of its providers is configured "
                    f"(it is wrapped by: {', '.join(record.wraps)})"
                )
            if len(failures) == 1:
                raise failures[0][1]
            reasons = "; ".join(f"{name}: {exc}" for name, exc in failures)
            first = failures[0][1]
            raise type(first)(f"could not unlock account {self.account!r}: {reasons}")

    def lock(self, reason: str = "request") -> None:
        """Wipe the master key and every unwrapped data key from memory."""
        self._session.lock(reason)

    def close(self) -> None:
        self.lock(reason="close")

    # wrapping

    def _provider(self, name: str) -> KeyProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise UsageError(f"no [key_providers.{name}] is configured") from None

    def _wrap_master(self, name: str, master: Secret, version: int) -> ProviderWrap:
        provider = self._provider(name)
        blob = provider.wrap(bytes(master.view()), WrapContext(self.account, MASTER, version))
        return ProviderWrap(use=self._provider_backends.get(name, "?"), blob=blob)

    def _seal_data_key(self, purpose: str, version: int, material: Secret) -> bytes:
        master = self._session.master_key()
        return seal_data_key(
            self._suite_for,
            master,
            self._session.master_version,
            material,
            account=self.account,
            purpose=purpose,
            version=version,
        )

    def _unseal_data_key(self, purpose: str, version: int, entry: KeyVersion) -> Secret:
        master = self._session.master_key()
        if entry.wrapped is None:
            raise KeyUnavailableError(
                f"{purpose} key version {version} of account {self.account!r} was destroyed"
            )
        if entry.master_version != self._session.master_version:
            raise KeyLockedError(
                f"account {self.account!r}: the master key changed; lock and unlock again"
            )
        return open_data_key(
            self._suite_for,
            master,
            entry.wrapped,
            account=self.account,
            purpose=purpose,
            version=version,
        )

    # data keys

    def data_key(self, purpose: str, version: int | None = None) -> DataKey:
        """The primary data key of ``purpose`` (created on first use), or a given version.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the version is unknown,
            retired or destroyed.
        """
        with self._guard:
            record = self._read()
            if purpose not in record.keysets:
                self.ensure(purpose)
                record = self._read()
            keyset = record.keysets[purpose]
            wanted = keyset.primary if version is None else version
            cached = self._session.cached(purpose, wanted)
            if cached is not None:
                return cached
            entry = keyset.versions.get(wanted)
            if entry is None:
                raise KeyUnavailableError(
                    f"{purpose} has no key version {wanted} in account {self.account!r}"
                )
            if entry.state is not KeyState.ACTIVE:
                raise KeyUnavailableError(
                    f"{purpose} key version {wanted} of account {self.account!r} is {entry.state}"
                )
            key = DataKey(
                purpose,
                wanted,
                self._suite_for(entry.suite),
                self._unseal_data_key(purpose, wanted, entry),
            )
            self._session.remember(key)
            return key

    def key_lookup(self, purpose: str) -> KeyLookup:
        """A ``version -> (suite, key bytes)`` function for the formats' decryptors."""

        def lookup(version: int) -> tuple[CipherSuite, memoryview]:
            key = self.data_key(purpose, version)
            return key.suite, key.material.view()

        return lookup

    def primary_version(self, purpose: str) -> int | None:
        """The primary version of ``purpose``, or ``None`` if it has no keyset yet."""
        keyset = self._read().keysets.get(purpose)
        return keyset.primary if keyset else None

    def ensure(self, *purposes: str) -> None:
        """Create each keyset of ``purposes`` that does not exist yet, in one record write.

        Keysets are created under the record's lock, so two processes making
        the same keyset at once agree on its version 1 instead of racing to 2.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        with self._guard:
            missing = [p for p in dict.fromkeys(purposes) if p not in self._read().keysets]
            if missing:
                self._add_versions(missing, create_only=True)

    def _add_versions(self, purposes: list[str], *, create_only: bool) -> dict[str, int]:
        """Add a primary version to each keyset (creating it), or only create missing ones."""
        added: dict[str, int] = {}
        with self._changing() as record:
            for purpose in purposes:
                keyset = record.keysets.get(purpose)
                if keyset is not None and create_only:
                    continue
                version = max(keyset.versions, default=0) + 1 if keyset else 1
                material = Secret.generate(KEY_SIZE, label=f"{self.account} {purpose} key (new)")
                try:
                    wrapped = self._seal_data_key(purpose, version, material)
                finally:
                    material.wipe()
                entry = KeyVersion(
                    suite=self._default_suite,
                    master_version=self._session.master_version,
                    wrapped=wrapped,
                )
                if keyset is None:
                    record.keysets[purpose] = Keyset(primary=version, versions={version: entry})
                else:
                    keyset.versions[version] = entry
                    keyset.primary = version
                added[purpose] = version
        return added
