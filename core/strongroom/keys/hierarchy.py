"""``AccountKeys``: one account's envelope-encryption hierarchy.

::

    provider root (keyring, passphrase, Vault, HSM)     never leaves its backend where it can
      └─ master key: random 256-bit, on disk only wrapped by each provider
           └─ data keysets, one per purpose, numbered versions, one primary

The master key wraps every data key version with the sealed format, bound
to (account, purpose, version).  Rotating a keyset adds a version and makes
it primary; nothing is re-encrypted.  Rotating the master key re-wraps the
data keys only; re-wrapping for a provider touches the master key only.
Retiring a version stops it decrypting; destroying it erases its wrapped
key, crypto-shredding what it protected.

Every change is one atomic replace of the account's record under an
exclusive lock, so concurrent processes and crashes leave the old state or
the new one.  The unlocked master key lives in a :class:`Secret` and is
wiped on :meth:`AccountKeys.lock`, on close, and after the idle timeout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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
from strongroom.formats.context import Context
from strongroom.formats.sealed import open_sealed, seal
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
from strongroom.secret import Secret

__all__ = ["AccountKeys", "DataKey", "KeyStatus", "KeysetStatus"]

MASTER = "master"
KEY_SIZE = 32
LOCK_FILE = ".keys.lock"
#: The suite that wraps data keys under the master key.
WRAP_SUITE = "aes-256-gcm"

SuiteResolver = Callable[[str], CipherSuite]
KeyLookup = Callable[[int], tuple[CipherSuite, memoryview]]


@dataclass(frozen=True)
class DataKey:
    """One unwrapped data key version; its material is a wiped-on-lock handle."""

    purpose: str
    version: int
    suite: CipherSuite
    material: Secret


@dataclass(frozen=True)
class KeysetStatus:
    """A keyset as ``strongroom keys list`` shows it: no key material."""

    purpose: str
    primary: int
    versions: dict[int, tuple[str, KeyState, int]]  # version -> (suite, state, master version)


@dataclass(frozen=True)
class KeyStatus:
    """The account's hierarchy as ``strongroom status`` shows it."""

    account: str
    master_version: int
    providers: dict[str, str]  # config name -> backend name
    keysets: list[KeysetStatus]
    unlocked: bool


class AccountKeys(Closeable):
    """The key hierarchy of one account, stored in ``directory``.

    ``providers`` maps config names (``key_providers.<name>``) to built
    providers and ``provider_backends`` the same names to backend names;
    ``suite_for`` turns a cipher-suite name into a suite;
    ``notify(hook_name, **kwargs)`` fires a lifecycle hook.
    """

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
        self._idle_timeout = idle_timeout
        self._guard = threading.RLock()
        self._master: Secret | None = None
        self._master_version = 0
        self._data_keys: dict[tuple[str, int], DataKey] = {}
        self._timer: threading.Timer | None = None
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
        self._cached = (stamp, record)
        if record.account != self.account:
            raise IntegrityError(
                f"{self.directory}: the key record belongs to another account, not {self.account!r}"
            )
        return record

    @contextlib.contextmanager
    def _changing(self) -> Iterator[KeyRecord]:
        """Read-modify-write the record under an exclusive lock; written only on success."""
        make_private_dir(self.directory)
        with self._guard, locked(self.directory / LOCK_FILE):
            record = self._read().model_copy(deep=True)
            yield record
            save_record(self.directory, record)

    def create(self, provider_names: list[str] | None = None) -> None:
        """Create the hierarchy: a master key wrapped by each named provider.

        :raises UsageError: the account already has keys, or no provider is named.
        :raises strongroom.errors.KeyUnavailableError: a provider cannot wrap.
        """
        names = list(self._providers) if provider_names is None else provider_names
        if not names:
            raise UsageError("configure at least one [key_providers.<name>] to create keys")
        make_private_dir(self.directory)
        with self._guard, locked(self.directory / LOCK_FILE):
            if self.exists():
                raise UsageError(
                    f"account {self.account!r} already has keys in {self.directory}; "
                    "refusing to overwrite them"
                )
            master = Secret.generate(KEY_SIZE, label=f"{self.account} master key v1")
            record = KeyRecord(account=self.account, master_version=1)
            for name in names:
                record.wraps[name] = self._wrap_master(name, master, 1)
            save_record(self.directory, record)
            self._install_master(master, 1)
            self._unlocked_by = names[0]

    # locking

    @property
    def unlocked(self) -> bool:
        return self._master is not None

    def unlock(self, provider: str | None = None) -> str:
        """Unwrap the master key through ``provider``, or the first that works.

        Returns the config name of the provider that unlocked it.

        :raises strongroom.errors.KeyUnavailableError: no provider could
            unwrap it; the message says what each one answered.
        """
        with self._guard:
            record = self._read()
            if self._master is not None and self._master_version == record.master_version:
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
                self._install_master(
                    Secret(bytearray(material), label=label), record.master_version
                )
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
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._master is None:
                return
            self._master.wipe()
            self._master = None
            for key in self._data_keys.values():
                key.material.wipe()
            self._data_keys.clear()
        self._notify("strongroom_key_locked", account=self.account, reason=reason)

    def close(self) -> None:
        self.lock(reason="close")

    def _install_master(self, master: Secret, version: int) -> None:
        if self._master is not None and self._master is not master:
            self._master.wipe()
        for key in self._data_keys.values():
            key.material.wipe()
        self._data_keys.clear()
        self._master, self._master_version = master, version
        self._touch()

    def _touch(self) -> None:
        """Restart the idle timer; called on every use of the unlocked key."""
        if self._idle_timeout is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._idle_timeout, self.lock, kwargs={"reason": "idle"})
        self._timer.daemon = True
        self._timer.start()

    def _master_key(self) -> Secret:
        if self._master is None:
            raise KeyLockedError(f"account {self.account!r} is locked; unlock it first")
        self._touch()
        return self._master

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
        master = self._master_key()
        return seal(
            self._suite_for(WRAP_SUITE),
            master.view(),
            self._master_version,
            material.view(),
            _wrap_context(self.account, purpose, version),
        )

    def _unseal_data_key(self, purpose: str, version: int, entry: KeyVersion) -> Secret:
        master = self._master_key()
        if entry.wrapped is None:
            raise KeyUnavailableError(
                f"{purpose} key version {version} of account {self.account!r} was destroyed"
            )
        if entry.master_version != self._master_version:
            raise KeyLockedError(
                f"account {self.account!r}: the master key changed; lock and unlock again"
            )

        def master_for(_version: int) -> tuple[CipherSuite, memoryview]:
            return self._suite_for(WRAP_SUITE), master.view()

        plain = open_sealed(
            entry.wrapped, master_for, _wrap_context(self.account, purpose, version)
        )
        return Secret(bytearray(plain), label=f"{self.account} {purpose} key v{version}")

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
            cached = self._data_keys.get((purpose, wanted))
            if cached is not None and not cached.material.wiped:
                self._touch()
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
            self._data_keys[(purpose, wanted)] = key
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
                entry = KeyVersion(
                    suite=self._default_suite,
                    master_version=self._master_version,
                    wrapped=self._seal_data_key(purpose, version, material),
                )
                material.wipe()
                if keyset is None:
                    record.keysets[purpose] = Keyset(primary=version, versions={version: entry})
                else:
                    keyset.versions[version] = entry
                    keyset.primary = version
                added[purpose] = version
        return added

    # rotation, retirement, destruction

    def rotate(self, purpose: str) -> int:
        """Add a new primary version to ``purpose``; return its number.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        with self._guard:
            old = self.primary_version(purpose)
            new = self._add_versions([purpose], create_only=False)[purpose]
        self._notify(
            "strongroom_key_rotated",
            account=self.account,
            purpose=purpose,
            old_version=old or 0,
            new_version=new,
        )
        return new

    def rotate_master(self) -> int:
        """Replace the master key; re-wrap every live data key and every provider wrap.

        Data is not touched.  Returns the new master version.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: a provider cannot wrap;
            nothing was changed.
        """
        with self._guard:
            old_master = self._master_key()
            with self._changing() as record:
                unwrapped = {
                    (purpose, number): self._unseal_data_key(purpose, number, entry)
                    for purpose, keyset in record.keysets.items()
                    for number, entry in keyset.versions.items()
                    if entry.wrapped is not None
                }
                new_version = record.master_version + 1
                new_master = Secret.generate(
                    KEY_SIZE, label=f"{self.account} master key v{new_version}"
                )
                wraps = {
                    name: self._wrap_master(name, new_master, new_version) for name in record.wraps
                }
                self._master, self._master_version = new_master, new_version
                try:
                    for (purpose, number), material in unwrapped.items():
                        entry = record.keysets[purpose].versions[number]
                        entry.wrapped = self._seal_data_key(purpose, number, material)
                        entry.master_version = new_version
                except BaseException:
                    self._master, self._master_version = old_master, new_version - 1
                    raise
                record.wraps = wraps
                record.master_version = new_version
            for material in unwrapped.values():
                material.wipe()
            old_master.wipe()
            self._install_master(new_master, new_version)
        self._notify(
            "strongroom_key_rotated",
            account=self.account,
            purpose=MASTER,
            old_version=new_version - 1,
            new_version=new_version,
        )
        return new_version

    def rewrap_for(self, provider: str) -> None:
        """Wrap the master key afresh for ``provider`` (new salt, new passphrase...).

        Adds the provider if it did not wrap the account yet.  Data keys and
        data are not touched.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        with self._guard:
            master = self._master_key()
            with self._changing() as record:
                record.wraps[provider] = self._wrap_master(provider, master, record.master_version)

    def remove_provider(self, provider: str) -> None:
        """Stop ``provider`` wrapping the master key and erase its root for this account.

        :raises UsageError: it is the last provider: the keys would be lost.
        """
        with self._guard, self._changing() as record:
            if provider not in record.wraps:
                raise UsageError(f"provider {provider!r} does not wrap account {self.account!r}")
            if len(record.wraps) == 1:
                raise UsageError(
                    f"{provider!r} is the only provider of account {self.account!r}; "
                    "add another before removing it"
                )
            del record.wraps[provider]
        if provider in self._providers:
            self._providers[provider].destroy(self.account)

    def retire(self, purpose: str, version: int) -> None:
        """Stop ``version`` decrypting; it still exists until destroyed.

        :raises UsageError: it is the primary version, or does not exist.
        """
        self._set_state(purpose, version, KeyState.RETIRED)
        self._notify(
            "strongroom_key_retired", account=self.account, purpose=purpose, version=version
        )

    def destroy(self, purpose: str, version: int) -> None:
        """Erase ``version``: everything it encrypted becomes unreadable.

        :raises UsageError: it is the primary version, or does not exist.
        """
        self._set_state(purpose, version, KeyState.DESTROYED)
        self._notify(
            "strongroom_key_destroyed", account=self.account, purpose=purpose, version=version
        )

    def _set_state(self, purpose: str, version: int, state: KeyState) -> None:
        with self._guard, self._changing() as record:
            keyset = record.keysets.get(purpose)
            entry = keyset.versions.get(version) if keyset else None
            if keyset is None or entry is None:
                raise UsageError(f"{purpose} has no key version {version}")
            if version == keyset.primary:
                raise UsageError(
                    f"{purpose} key version {version} is primary; rotate the keyset first"
                )
            if entry.state is KeyState.DESTROYED:
                raise UsageError(f"{purpose} key version {version} is already destroyed")
            entry.state = state
            if state is KeyState.DESTROYED:
                entry.wrapped = None
        cached = self._data_keys.pop((purpose, version), None)
        if cached is not None:
            cached.material.wipe()

    # reporting and wiping

    def status(self) -> KeyStatus:
        """What the hierarchy holds, without any key material."""
        record = self._read()
        return KeyStatus(
            account=self.account,
            master_version=record.master_version,
            providers={name: wrap.use for name, wrap in record.wraps.items()},
            keysets=[
                KeysetStatus(
                    purpose,
                    keyset.primary,
                    {
                        number: (entry.suite, entry.state, entry.master_version)
                        for number, entry in sorted(keyset.versions.items())
                    },
                )
                for purpose, keyset in sorted(record.keysets.items())
            ],
            unlocked=self.unlocked,
        )

    def destroy_all(self) -> list[str]:
        """Wipe step one: erase every data key, then each provider's root, then the wraps.

        Afterwards nothing this account encrypted can be decrypted.  Each step
        is idempotent and the record names the wrapping providers until their
        roots are gone, so a wipe interrupted anywhere finishes when run again.
        The data itself is removed by the caller afterwards.  Returns the
        providers that wrapped the account but are not configured here, whose
        roots (if they keep one outside the wrap) are left for the operator.

        :raises strongroom.errors.KeyUnavailableError: a provider could not
            erase its root; the data keys are already gone.
        """
        with self._guard:
            if not self.exists():
                self.lock(reason="wipe")
                return []
            with self._changing() as record:
                for keyset in record.keysets.values():
                    for entry in keyset.versions.values():
                        entry.wrapped = None
                        entry.state = KeyState.DESTROYED
                wraps = dict(record.wraps)
            self.lock(reason="wipe")
            for name in wraps:
                if name in self._providers:
                    self._providers[name].destroy(self.account)
            with self._changing() as record:
                record.wraps.clear()
        return [
            f"{name} ({wrap.use})" for name, wrap in wraps.items() if name not in self._providers
        ]


def _wrap_context(account: str, purpose: str, version: int) -> Context:
    return Context(account=account, store="keys", record=f"{purpose}#{version}")
