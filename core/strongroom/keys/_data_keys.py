"""The data keys an account's stores and commands encrypt with, read from its record.

Keysets are never created here on first use: only
:meth:`DataKeyAccess.ensure`, which ``strongroom init`` calls, makes them.
Every data key is sealed under the master key of the record it is written
into (the session catches up with a master rotated elsewhere first), and
opened only from an authenticated record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import IntegrityError, KeyUnavailableError, UsageError
from strongroom.keys._access import KEY_SIZE, KeyAccess
from strongroom.keys._record import RECORD_FILE, KeyRecord, Keyset, KeyState, KeyVersion
from strongroom.keys._session import DataKey
from strongroom.keys.purposes import check_purpose
from strongroom.secret import Secret

if TYPE_CHECKING:
    from strongroom.formats import KeyFor

__all__ = ["DataKeyAccess"]


class DataKeyAccess(KeyAccess):
    """Data keys by purpose and version, and the keysets' floors."""

    def _seal_data_key(self, purpose: str, version: int, material: Secret) -> bytes:
        from strongroom.keys._wrapping import seal_data_key

        return seal_data_key(
            self._session.master_key(),
            self._session.master_version,
            material,
            account=self.account,
            purpose=purpose,
            version=version,
        )

    def _unseal_data_key(self, purpose: str, version: int, entry: KeyVersion) -> Secret:
        from strongroom.keys._wrapping import open_data_key

        master = self._session.master_key()
        if entry.wrapped is None:
            raise KeyUnavailableError(
                f"{purpose} key version {version} of account {self.account!r} was destroyed"
            )
        if entry.master_version != self._session.master_version:
            raise IntegrityError(
                f"{self.directory / RECORD_FILE}: {purpose} key version {version} is sealed "
                f"under master key version {entry.master_version}, which is not current"
            )
        return open_data_key(
            master, entry.wrapped, account=self.account, purpose=purpose, version=version
        )

    def _keyset(self, record: KeyRecord, purpose: str) -> Keyset:
        """``purpose``'s keyset; a missing one is never created here.

        :raises strongroom.errors.UsageError: ``purpose`` is malformed.
        :raises strongroom.errors.KeyUnavailableError: the account has no such keyset.
        """
        keyset = record.keysets.get(purpose)
        if keyset is None:
            check_purpose(purpose)
            raise KeyUnavailableError(
                f"account {self.account!r} has no {purpose} keyset; 'strongroom init' "
                "creates the keysets of the stores in the config"
            )
        return keyset

    # data keys

    def data_key(self, purpose: str, version: int | None = None) -> DataKey:
        """The primary data key of ``purpose``, or a given version.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the keyset or version is
            unknown, retired or destroyed.
        :raises strongroom.errors.IntegrityError: the key record was altered.
        """
        needs_presence = purpose in self._policy.presence_purposes
        # a store's names keyset shares its data keyset's presence: the user is asked once
        asked_for = purpose.removesuffix(":names")
        if needs_presence and self._background.get():
            self._require_presence(f"using the {asked_for} keyset")  # refused: nobody is there
        while True:
            with self._guard:
                keyset = self._keyset(self._current(), purpose)
                wanted = keyset.primary if version is None else version
                entry = keyset.versions.get(wanted)
                if entry is None:
                    raise KeyUnavailableError(
                        f"{purpose} has no key version {wanted} in account {self.account!r}"
                    )
                if entry.state is not KeyState.ACTIVE:
                    raise KeyUnavailableError(
                        f"{purpose} key version {wanted} of account {self.account!r} "
                        f"is {entry.state}"
                    )
                cached = self._session.cached(purpose, wanted)
                if cached is not None:
                    return cached
                if not needs_presence or asked_for in self._session.present:
                    key = DataKey(
                        purpose,
                        wanted,
                        self._suite_for(entry.suite),
                        self._unseal_data_key(purpose, wanted, entry),
                    )
                    self._session.remember(key)
                    return key
                period = self._session.period
            # Asked outside the guard: a prompt the user leaves open must not stop the
            # idle lock (nor a lock from another thread) while it waits.
            self._require_presence(f"using the {asked_for} keyset")
            with self._guard:
                if self._session.period == period:  # not locked meanwhile: still this period
                    self._session.present.add(asked_for)
            # then round again: locked meanwhile raises KeyLockedError there

    def key_lookup(self, purpose: str) -> KeyFor:
        """A ``version -> (suite, key bytes)`` function for the formats' decryptors.

        It raises :class:`~strongroom.errors.KeyUnavailableError` for a retired
        or destroyed version, or a locked account, and
        :class:`~strongroom.errors.IntegrityError` for a version the keyset
        never had: only an altered header (or another keyset's object) names one.
        """

        def lookup(version: int) -> tuple[CipherSuite, memoryview]:
            try:
                key = self.data_key(purpose, version)
            except KeyUnavailableError:
                if not self._had_version(purpose, version):
                    raise IntegrityError(
                        f"an object of {purpose} names key version {version}, which the "
                        "keyset never had: it was altered, or belongs to another keyset"
                    ) from None
                raise
            return key.suite, key.material.view()

        return lookup

    def _had_version(self, purpose: str, version: int) -> bool:
        with self._guard:
            return version in self._keyset(self._current(), purpose).versions

    def primary_version(self, purpose: str) -> int:
        """The primary version of ``purpose``.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the account has no such keyset.
        """
        return self._keyset(self._current(), purpose).primary

    def floor(self, purpose: str) -> int:
        """The re-encryption floor of ``purpose``: 0, or the oldest version still in use.

        A store raises it with :meth:`raise_floor` once every object is under
        that version or newer; from then on it refuses an object under an
        older version as rolled back.  It lives in the authenticated record,
        so deleting or restoring a file cannot lower it.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the keyset does not exist.
        """
        return self._keyset(self._current(), purpose).floor

    def raise_floor(self, purpose: str, version: int) -> None:
        """Record that every object of ``purpose`` is under ``version`` or newer.

        Lowering is a no-op: the floor only rises.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.UsageError: ``version`` is not a version of the keyset.
        """
        with self._guard:
            if version <= self.floor(purpose):
                return
            with self._changing() as record:
                keyset = self._keyset(record, purpose)
                if version not in keyset.versions:
                    raise UsageError(f"{purpose} has no key version {version}")
                keyset.floor = max(keyset.floor, version)

    def ensure(self, *purposes: str) -> list[str]:
        """Create each keyset of ``purposes`` that does not exist yet, in one record write.

        Only ``strongroom init`` (and code that sets up an account the same
        way) calls this: a missing keyset is never created on first use.
        Keysets are created under the record's lock, so two processes making
        the same keyset at once agree on its version 1.  Returns those created.

        :raises strongroom.errors.UsageError: a purpose is malformed.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        wanted = [check_purpose(p) for p in dict.fromkeys(purposes)]
        with self._guard:
            if all(p in self._current().keysets for p in wanted):
                return []
            return list(self._add_versions(wanted, create_only=True))

    def _add_versions(self, purposes: list[str], *, create_only: bool) -> dict[str, int]:
        """Add a primary version to each existing keyset, or create each missing one."""
        added: dict[str, int] = {}
        with self._changing() as record:
            for purpose in purposes:
                if create_only:
                    if purpose in record.keysets:
                        continue
                    keyset = None
                else:
                    keyset = self._keyset(record, purpose)
                version = max(keyset.versions) + 1 if keyset else 1
                material = Secret.generate(KEY_SIZE, label=f"{self.account} {purpose} key (new)")
                try:
                    wrapped = self._seal_data_key(purpose, version, material)
                finally:
                    material.wipe()
                entry = KeyVersion(
                    suite=self._default_suite,
                    master_version=record.master_version,
                    wrapped=wrapped,
                )
                if keyset is None:
                    record.keysets[purpose] = Keyset(primary=version, versions={version: entry})
                else:
                    keyset.versions[version] = entry
                    keyset.primary = version
                added[purpose] = version
        return added
