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

from strongroom._fs import locked, make_private_dir
from strongroom.errors import UsageError
from strongroom.keys._access import KEY_SIZE, LOCK_FILE, KeyAccess
from strongroom.keys._record import KeyRecord, KeyState, save_record
from strongroom.keys._session import DataKey
from strongroom.keys._status import KeysetStatus, KeyStatus, describe
from strongroom.keys._wrapping import MASTER
from strongroom.secret import Secret

__all__ = ["AccountKeys", "DataKey", "KeyStatus", "KeysetStatus"]


class AccountKeys(KeyAccess):
    """The key hierarchy of one account, stored in ``directory``.

    ``providers`` maps config names (``key_providers.<name>``) to built
    providers and ``provider_backends`` the same names to backend names;
    ``suite_for`` turns a cipher-suite name into a suite;
    ``notify(hook_name, **kwargs)`` fires a lifecycle hook.

    Unlocking and data keys come from :class:`~strongroom.keys._access.KeyAccess`;
    what changes the hierarchy is here.
    """

    # creation

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
            self._session.start(master, 1)
            self._unlocked_by = names[0]

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
            old_master, old_version = self._session.master_key(), self._session.master_version
            unwrapped: dict[tuple[str, int], Secret] = {}
            new_master = Secret.generate(KEY_SIZE, label=f"{self.account} master key (new)")
            try:
                with self._changing() as record:
                    unwrapped = {
                        (purpose, number): self._unseal_data_key(purpose, number, entry)
                        for purpose, keyset in record.keysets.items()
                        for number, entry in keyset.versions.items()
                        if entry.wrapped is not None
                    }
                    new_version = record.master_version + 1
                    wraps = {
                        name: self._wrap_master(name, new_master, new_version)
                        for name in record.wraps
                    }
                    self._session.switch(new_master, new_version)
                    for (purpose, number), material in unwrapped.items():
                        entry = record.keysets[purpose].versions[number]
                        entry.wrapped = self._seal_data_key(purpose, number, material)
                        entry.master_version = new_version
                    record.wraps = wraps
                    record.master_version = new_version
            except BaseException:
                # Nothing was saved (or the save failed): keep sealing under the old key.
                self._session.switch(old_master, old_version)
                new_master.wipe()
                raise
            finally:
                for material in unwrapped.values():
                    material.wipe()
            old_master.wipe()
            self._session.start(new_master, new_version)
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
            master = self._session.master_key()
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
        self._session.forget(purpose, version)

    # reporting and wiping

    def status(self) -> KeyStatus:
        """What the hierarchy holds, without any key material."""
        return describe(self.account, self._read(), unlocked=self.unlocked)

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
