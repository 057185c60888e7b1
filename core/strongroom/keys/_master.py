"""Changes to the master key and its wraps: rotation, passphrase changes, provider changes.

Providers may ask the user (a passphrase) and a prompt can stay open for
ever, so every change here prepares its wraps outside the record's lock,
then takes the lock and installs them only if the record has not moved
meanwhile, preparing again when it has.  A master rotation has every
provider prove its current root on its existing wrap first
(:meth:`~strongroom.key_provider.KeyProvider.renew`), so a mistyped
passphrase refuses the rotation instead of becoming the new one; removing a
provider replaces the master key, so an old copy of its wrap opens nothing.
"""

from __future__ import annotations

from strongroom.audit import AuditEvent
from strongroom.errors import StoreError, UsageError
from strongroom.key_provider import WrapContext
from strongroom.keys._access import KEY_SIZE
from strongroom.keys._data_keys import DataKeyAccess
from strongroom.keys._record import KeyRecord, ProviderWrap
from strongroom.keys.purposes import MASTER
from strongroom.secret import Secret

__all__ = ["MasterKeyChanges"]

#: How often a change prepared outside the record's lock is redone when the record moved.
_ATTEMPTS = 3


class _Stale(Exception):
    """The record changed between preparing a change and taking the lock."""


class MasterKeyChanges(DataKeyAccess):
    """Replacing the master key, and changing which providers wrap it."""

    def rotate_master(self, *, rewrap: str | None = None) -> int:
        """Replace the master key; re-wrap every live data key and every provider wrap.

        Data is not touched.  Returns the new master version.  Every provider
        proves its current root before wrapping the new key (``renew``), so a
        rotation never changes a passphrase by mistake; ``rewrap`` names the
        one provider to wrap for afresh instead (a new passphrase), so a
        passphrase change and a master rotation are one atomic write.

        :raises UsageError: ``rewrap`` does not wrap the account.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: a provider cannot prove
            its root or wrap; nothing was changed.
        """
        return self._replace_master(rewrap=rewrap, without=None)

    def _replace_master(self, *, rewrap: str | None, without: str | None) -> int:
        """Replace the master key, then tell plugins; returns the new version."""
        with self.holding_secrets():  # a retry after a stale record asks nobody again
            new_version = self._prepare_and_install(rewrap=rewrap, without=without)
        self._notify(
            "strongroom_key_rotated",
            account=self.account,
            purpose=MASTER,
            old_version=new_version - 1,
            new_version=new_version,
        )
        return new_version

    def _prepare_and_install(self, *, rewrap: str | None, without: str | None) -> int:
        """A new master key for every provider but ``without``, whose root is then erased.

        The providers wrap outside the record's lock (they may ask the user);
        under the lock, a record changed meanwhile sends the work round again.
        """
        with self._guard:
            for _attempt in range(_ATTEMPTS):
                seen = self._current()
                if rewrap is not None and rewrap not in seen.wraps:
                    raise UsageError(f"provider {rewrap!r} does not wrap account {self.account!r}")
                new_master = Secret.generate(KEY_SIZE, label=f"{self.account} master key (new)")
                try:
                    wraps = self._wraps_for(seen, new_master, rewrap=rewrap, without=without)
                    if self._install_master(seen, new_master, wraps, without=without):
                        return seen.master_version + 1
                except BaseException:
                    new_master.wipe()
                    raise
                new_master.wipe()
        raise StoreError(f"account {self.account!r}: the key record keeps changing; try again")

    def _wraps_for(
        self, seen: KeyRecord, master: Secret, *, rewrap: str | None, without: str | None
    ) -> dict[str, ProviderWrap]:
        version = seen.master_version + 1
        previous = WrapContext(self.account, MASTER, seen.master_version)
        wraps = {}
        for name, wrap in seen.wraps.items():
            if name == without:
                continue
            if name == rewrap:
                wraps[name] = self._wrap_master(name, master, version, afresh=True)
                continue
            blob = self._provider(name).renew(
                bytes(master.view()),
                WrapContext(self.account, MASTER, version),
                previous=wrap.blob,
                previous_context=previous,
            )
            wraps[name] = ProviderWrap(use=wrap.use, blob=blob)
        return wraps

    def _install_master(
        self,
        seen: KeyRecord,
        new_master: Secret,
        wraps: dict[str, ProviderWrap],
        *,
        without: str | None,
    ) -> bool:
        """Re-seal live data keys under ``new_master`` and save; ``False``: ``seen`` is stale."""
        new_version = seen.master_version + 1
        unwrapped: dict[tuple[str, int], Secret] = {}
        old: tuple[Secret, int] | None = None
        try:
            with self._changing() as record:
                if record.master_version != seen.master_version or record.wraps != seen.wraps:
                    raise _Stale
                old = self._session.master_key(), self._session.master_version
                unwrapped = {
                    (purpose, number): self._unseal_data_key(purpose, number, entry)
                    for purpose, keyset in record.keysets.items()
                    for number, entry in keyset.versions.items()
                    if entry.wrapped is not None
                }
                self._session.switch(new_master, new_version)
                for (purpose, number), material in unwrapped.items():
                    entry = record.keysets[purpose].versions[number]
                    entry.wrapped = self._seal_data_key(purpose, number, material)
                    entry.master_version = new_version
                record.wraps = wraps
                record.master_version = new_version
                if without is not None and without in self._providers:
                    # Before the save: if it fails, the record still names it for a retry.
                    self._providers[without].destroy(self.account)
        except _Stale:
            return False
        except BaseException:
            # Nothing was saved (or the save failed): keep sealing under the old key.
            if old is not None:
                self._session.switch(*old)
            raise
        finally:
            for material in unwrapped.values():
                material.wipe()
        assert old is not None  # noqa: S101 - set before any save
        old[0].wipe()
        self._session.start(new_master, new_version)
        return True

    def rewrap_for(self, provider: str) -> None:
        """Wrap the master key afresh for ``provider`` (new salt, new passphrase...).

        A provider whose backend can re-wrap its current wrap under a new
        root version does that instead (``rotate_root``: Vault Transit), so
        the master key is not sent to it.  Adds the provider if it did not
        wrap the account yet.  Data keys and data are not touched.  Audited
        as ``provider.rewrapped``.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        with self._guard:
            for _attempt in range(_ATTEMPTS):
                seen = self._current()
                wrap = self._rotated_wrap(provider, seen) or self._wrap_master(
                    provider,  # outside the lock: it may ask for a passphrase
                    self._session.master_key(),
                    seen.master_version,
                    afresh=provider in seen.wraps,
                )
                try:
                    with self._changing() as record:
                        if record.master_version != seen.master_version:
                            raise _Stale
                        record.wraps[provider] = wrap
                except _Stale:
                    continue
                details = {"provider": provider, "use": wrap.use}
                event = AuditEvent("provider.rewrapped", self.account, details=details)
                self._notify("strongroom_audit_event", event=event)
                return
        raise StoreError(f"account {self.account!r}: the key record keeps changing; try again")

    def _rotated_wrap(self, provider: str, seen: KeyRecord) -> ProviderWrap | None:
        """The provider's wrap re-wrapped by its own backend under a new root, if it can."""
        current = seen.wraps.get(provider)
        if current is None:
            return None
        context = WrapContext(self.account, MASTER, seen.master_version)
        blob = self._provider(provider).rotate_root(current.blob, context)
        return None if blob is None else ProviderWrap(use=current.use, blob=blob)

    def remove_provider(self, provider: str) -> None:
        """Stop ``provider`` unlocking: a new master key for the others, and its root erased.

        The master key is replaced, not only the provider's wrap dropped, so
        an old copy of its wrap put back into the record opens nothing: the
        record's MAC and every data key are under the new master key.

        :raises UsageError: it is the last provider: the keys would be lost.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: its root could not be
            erased; nothing was changed, so the command can be run again.
        """
        record = self._current()
        if provider not in record.wraps:
            raise UsageError(f"provider {provider!r} does not wrap account {self.account!r}")
        if len(record.wraps) == 1:
            raise UsageError(
                f"{provider!r} is the only provider of account {self.account!r}; "
                "add another before removing it"
            )
        self._replace_master(rewrap=None, without=provider)
