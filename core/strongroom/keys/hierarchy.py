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
exclusive lock, MACed under a key derived from the master key, so
concurrent processes and crashes leave the old state or the new one, and
an edit by anyone without the master key is refused.  The unlocked
master key lives in a :class:`Secret` and is wiped on
:meth:`AccountKeys.lock`, on close, and after the idle timeout.
"""

from __future__ import annotations

from strongroom.audit import AuditEvent
from strongroom.durable import locked, make_private_dir
from strongroom.errors import UsageError
from strongroom.keys._access import KEY_SIZE, LOCK_FILE
from strongroom.keys._master import MasterKeyChanges
from strongroom.keys._record import KeyRecord, KeyState, KeyVersion, save_record
from strongroom.keys._session import DataKey
from strongroom.keys._status import KeysetStatus, KeyStatus, describe
from strongroom.keys._wipe import destroy_record
from strongroom.keys.purposes import check_purpose, is_rotatable
from strongroom.secret import Secret

__all__ = ["AccountKeys", "DataKey", "KeyStatus", "KeysetStatus"]


class AccountKeys(MasterKeyChanges):
    """The key hierarchy of one account, stored in ``directory``.

    ``providers`` maps config names (``key_providers.<name>``) to built
    providers and ``provider_backends`` the same names to backend names;
    ``suite_for`` turns a cipher-suite name into a suite;
    ``notify(hook_name, **kwargs)`` fires a lifecycle hook;
    ``count_objects(purpose, version)`` counts the objects still under a
    version (``None``: cannot tell), so that a version in use is not
    retired or destroyed by mistake.

    Unlocking comes from :class:`~strongroom.keys._access.KeyAccess`, data
    keys from :class:`~strongroom.keys._data_keys.DataKeyAccess`, master key
    and provider changes from :class:`~strongroom.keys._master.MasterKeyChanges`;
    creation, keyset changes, reports and wipe are here.
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
        if self.exists():
            raise self._exists_error()
        master = Secret.generate(KEY_SIZE, label=f"{self.account} master key v1")
        try:
            # Providers may ask the user (a new passphrase): never while holding the lock.
            wraps = {name: self._wrap_master(name, master, 1) for name in names}
            make_private_dir(self.directory)
            with self._guard, locked(self.directory / LOCK_FILE):
                if self.exists():
                    raise self._exists_error()
                record = KeyRecord(account=self.account, master_version=1, wraps=wraps)
                # A provider that already keeps a generation for this account
                # (an earlier one wiped here) must not see this record as older.
                record.generation = max(self._kept_generations().values(), default=0)
                save_record(self.directory, record, master)
                self._record_generation(record.generation)
        except BaseException:
            master.wipe()
            raise
        self._session.start(master, 1)
        self._unlocked_by = names[0]
        event = AuditEvent("account.created", self.account, details={"providers": ",".join(names)})
        self._notify("strongroom_audit_event", event=event)

    def _exists_error(self) -> UsageError:
        return UsageError(
            f"account {self.account!r} already has keys in {self.directory}; "
            "refusing to overwrite them"
        )

    def accept_rollback(self) -> int:
        """Unlock an account whose record is older than a provider's kept generation, and keep it.

        For a record restored on purpose (a device restored from a backup):
        the record is authenticated as usual, then written again with a
        generation above every kept one.  Keys it lists as live come back,
        including any destroyed after it was saved.  Returns the new generation.

        :raises strongroom.errors.KeyUnavailableError: no provider could unlock it.
        :raises strongroom.errors.IntegrityError: the record was altered.
        """
        with self._guard:
            self.lock(reason="accept rollback")
            self._unlock(None, check_rollback=False)
            newest = max(self._kept_generations().values(), default=0)
            with self._changing() as record:
                record.generation = max(record.generation, newest)
            return record.generation

    # rotation, retirement, destruction

    def rotate(self, purpose: str) -> int:
        """Add a new primary version to ``purpose``; return its number.

        :raises UsageError: ``purpose`` is malformed, or is a store's names
            keyset, which is never rotated (every record name would change).
        :raises strongroom.errors.KeyUnavailableError: the keyset does not exist.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        if not is_rotatable(check_purpose(purpose)):
            raise UsageError(f"{purpose} is never rotated: every record name would change")
        with self._guard:
            old = self.primary_version(purpose)
            new = self._add_versions([purpose], create_only=False)[purpose]
        self._notify(
            "strongroom_key_rotated",
            account=self.account,
            purpose=purpose,
            old_version=old,
            new_version=new,
        )
        return new

    def retire(self, purpose: str, version: int, *, force: bool = False) -> None:
        """Stop ``version`` decrypting; it still exists until destroyed.

        Refused while objects remain under it (or they cannot be counted),
        unless ``force``: those objects then stay unreadable until deleted.

        :raises UsageError: it is the primary version, does not exist, or is still in use.
        """
        self._set_state(purpose, version, KeyState.RETIRED, force=force)
        self._notify(
            "strongroom_key_retired", account=self.account, purpose=purpose, version=version
        )

    def destroy(self, purpose: str, version: int, *, force: bool = False) -> None:
        """Erase ``version``: everything it encrypted becomes unreadable.

        Refused while objects remain under it (or they cannot be counted),
        unless ``force``: what they hold is then crypto-shredded.

        :raises UsageError: it is the primary version, does not exist, or is still in use.
        """
        self._set_state(purpose, version, KeyState.DESTROYED, force=force)
        self._notify(
            "strongroom_key_destroyed", account=self.account, purpose=purpose, version=version
        )

    def _set_state(self, purpose: str, version: int, state: KeyState, *, force: bool) -> None:
        with self._guard:
            self._check_changeable(self._current(), purpose, version)
            if not force:
                self._check_unused(purpose, version, state)
            with self._changing() as record:
                entry = self._check_changeable(record, purpose, version)
                entry.state = state
                if state is KeyState.DESTROYED:
                    entry.wrapped = None
            self._session.forget(purpose, version)

    def _check_changeable(self, record: KeyRecord, purpose: str, version: int) -> KeyVersion:
        keyset = self._keyset(record, check_purpose(purpose))
        entry = keyset.versions.get(version)
        if entry is None:
            raise UsageError(f"{purpose} has no key version {version}")
        if version == keyset.primary:
            raise UsageError(f"{purpose} key version {version} is primary; rotate the keyset first")
        if entry.state is KeyState.DESTROYED:
            raise UsageError(f"{purpose} key version {version} is already destroyed")
        return entry

    def _check_unused(self, purpose: str, version: int, state: KeyState) -> None:
        verb = "retire" if state is KeyState.RETIRED else "destroy"
        count = self._count_objects(purpose, version)
        if count is None:
            raise UsageError(
                f"cannot count what {purpose} key version {version} still encrypts; "
                f"to {verb} it anyway, force it"
            )
        if count:
            raise UsageError(
                f"{count} object(s) of {purpose} are still under key version {version}; "
                f"run 'strongroom keys reencrypt' first, or force it to {verb} them too"
            )

    # reporting and wiping

    def status(self) -> KeyStatus:
        """What the hierarchy holds, without any key material.

        Read without unlocking, so it is not authenticated: it reports what
        the file says, for display only.
        """
        return describe(self.account, self._read(), unlocked=self.unlocked)

    def destroy_all(self) -> list[str]:
        """Wipe step one: erase every data key, then each provider's root, then the wraps.

        Works whatever state the record is in and needs no unlock; see
        :func:`~strongroom.keys._wipe.destroy_record`.  The data itself is
        removed by the caller afterwards.  Returns one line for each thing it
        could not do, never raising for them.
        """
        with self._guard:
            self.lock(reason="wipe")
            if not self.directory.is_dir():
                return destroy_record(self.directory, self.account, self._providers)
            with locked(self.directory / LOCK_FILE):
                return destroy_record(self.directory, self.account, self._providers)
