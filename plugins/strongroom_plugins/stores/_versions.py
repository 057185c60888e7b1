"""Which key versions the ``files`` store may open or write, as the key record says.

What decides it lives in the account's key record, authenticated under a
key derived from the master key, never in the store's directory:

- only the *primary* version is ever written: a file sealed under a version
  that stopped being primary before it was renamed in is sealed again, so
  once a version is rotated out the number of objects under it can only
  fall, and counting them before retiring it cannot be outrun by a writer;
- a version's *state*: an object under a retired or destroyed version is
  unreadable for good (crypto-shredded), so listing and re-encryption skip
  it and :meth:`~strongroom_plugins.stores.files.FilesStore.unreadable`
  names it for purging;
- the keyset's *floor*: once a re-encryption pass has brought every
  readable object up to version *n* it is raised to *n*, and from then on
  an object under an older version can only be an old copy put back, so it
  is refused, and never re-sealed under a newer key.

Deleting or restoring files in the store's directory therefore cannot
lower the floor or bring a version back.  The primary is active and at or
above the floor by construction, so the everyday path (objects under the
primary) looks only at the primary.
"""

from __future__ import annotations

from strongroom.errors import IntegrityError, KeyLockedError, KeyUnavailableError
from strongroom.keys import KeyState
from strongroom.store import StoreBinding

__all__ = ["KeyVersions"]


class KeyVersions:
    """The state and floor of one store's data keyset, read from the key record."""

    def __init__(self, binding: StoreBinding) -> None:
        self._keys = binding.keys
        self._purpose = binding.purpose
        self._store = binding.name

    def primary(self) -> int:
        """The primary version."""
        return self._keys.primary_version(self._purpose)

    def floor(self) -> int:
        """The re-encryption floor; 0 while no pass has completed."""
        return self._keys.floor(self._purpose)

    def raise_floor(self, version: int) -> None:
        """Record that every readable object is under ``version`` or newer."""
        self._keys.raise_floor(self._purpose, version)

    def inactive(self) -> dict[int, KeyState]:
        """Every retired or destroyed version, with its state.

        The status report is read without authentication, so each version
        it calls inactive is confirmed against the authenticated record
        (asking for its key is refused before anything is unwrapped): an
        edited record can make the store skip or purge nothing it should not.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        claimed: dict[int, KeyState] = {}
        for keyset in self._keys.status().keysets:
            if keyset.purpose == self._purpose:
                claimed = {
                    version: state
                    for version, (_suite, state, _master) in keyset.versions.items()
                    if state is not KeyState.ACTIVE
                }
        confirmed: dict[int, KeyState] = {}
        for version, state in claimed.items():
            try:
                self._keys.data_key(self._purpose, version)
            except KeyLockedError:
                raise
            except KeyUnavailableError:
                confirmed[version] = state
        return confirmed

    def below_floor(self, version: int) -> bool:
        """Whether ``version`` is older than the floor: an object under it was put back.

        Only a version older than the primary can be; the status report
        (unauthenticated, readable while locked) says which that is, and
        only then is the authenticated floor asked for, so that a store whose
        objects are all current can be inspected while the account is locked.

        :raises strongroom.errors.KeyLockedError: it has to ask, and the account is locked.
        """
        claimed = [ks.primary for ks in self._keys.status().keysets if ks.purpose == self._purpose]
        return bool(claimed) and version < claimed[0] and version < self.floor()

    def writable(self, version: int) -> bool:
        """Whether a file sealed under ``version`` may be renamed in now: it is the primary."""
        return version == self.primary()

    def resealable(self, version: int) -> bool:
        """Whether an object read under ``version`` may be re-sealed under the primary now.

        Not if it is older than the floor (a copy put back since it was read),
        nor if its version was retired or destroyed since (the shred wins).
        """
        return self.writable(version) or (
            version >= self.floor() and version not in self.inactive()
        )

    def check(self, version: int) -> int:
        """Refuse ``version`` unless an object under it may be opened; return the primary.

        :raises strongroom.errors.IntegrityError: the keyset never had it, or
            it is older than the floor (a copy rolled back or planted).
        :raises strongroom.errors.KeyUnavailableError: it was retired or destroyed.
        """
        primary = self.primary()
        if not 1 <= version <= primary:
            raise IntegrityError(
                f"store {self._store!r}: an object names a key version the store never had"
            )
        if version == primary:
            return primary
        state = self.inactive().get(version)
        if state is not None:
            raise KeyUnavailableError(
                f"store {self._store!r}: an object is under key version {version}, which is "
                f"{state}; it can only be purged"
            )
        if version < self.floor():
            raise IntegrityError(
                f"store {self._store!r}: an object is older than the last completed "
                "re-encryption; it was rolled back or planted"
            )
        return primary
