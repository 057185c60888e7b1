"""Counting the ``files`` store's objects by key version, and purging unreadable ones.

The key hierarchy refuses to retire or destroy a version that objects
still use, unless forced; it asks the store how many there are, the records of a
committed batch not yet in place (its journal) included.  The
answer comes from the objects' headers, so nothing is decrypted and a
locked account can be counted.  A blob counts once for each version its
two files are under (re-encryption upgrades the key file, then the blob).

After a forced retire or destroy, the objects under that version can never
be opened, and their keys are encrypted under it too, so they are named by
their kind and 64-hex file name.  So are objects under a version older
than the floor: copies put back after a completed re-encryption, refused
for good.  Purging re-checks each one under the
store's lock, so an object a writer replaced meanwhile is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from strongroom.errors import StoreError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._journal import JOURNAL_FILE, entry_versions
from strongroom_plugins.stores._layout import StoredObject, scan
from strongroom_plugins.stores._reencrypt import object_versions
from strongroom_plugins.stores._versions import KeyVersions

__all__ = ["Inventory", "object_id"]


def object_id(obj: StoredObject) -> str:
    """An object's opaque id: ``record:<64 hex>`` or ``blob:<64 hex>``."""
    return f"{'blob' if obj.is_blob else 'record'}:{obj.name}"


class Inventory:
    """Counts and purges one store's objects by the key versions in their headers."""

    def __init__(
        self, root: Path, installer: Installer, versions: KeyVersions, store_name: str
    ) -> None:
        self._root = root
        self._installer = installer
        self._versions = versions
        self._store_name = store_name

    def in_use(self) -> dict[int, int]:
        """How many objects each key version encrypts now, a committed batch included.

        The entries of a committed journal (a killed writer's, or one being
        installed) count too: they are under the version that was the
        primary at its commit, which may be the one about to be retired or
        destroyed.  The journal is read before the directories, without the
        lock (the key hierarchy counts while holding its own guard, which a
        writer holding the store's lock may be waiting for), so a batch
        installed meanwhile is counted twice, never missed.

        :raises strongroom.errors.IntegrityError: the journal is not one this store wrote.
        """
        counts: Counter[int] = Counter(entry_versions(self._root / JOURNAL_FILE))
        for obj in scan(self._root):
            counts.update(object_versions(obj))
        return dict(sorted(counts.items()))

    def unreadable(self) -> Iterator[tuple[str, int]]:
        """``(object id, version)`` of each object that can never be opened again.

        Those under a retired or destroyed version, and those under a version
        older than the floor (copies put back after a completed pass).
        """
        self._installer.settle()
        refused = self._refused()
        for obj in scan(self._root):
            versions = refused(object_versions(obj))
            if versions:
                yield object_id(obj), min(versions)

    def purge(self) -> set[str]:
        """Delete every object :meth:`unreadable` would name; return the names that went."""
        refused = self._refused()
        candidates = [obj for obj in scan(self._root) if refused(object_versions(obj))]
        removed: list[StoredObject] = []
        try:
            with self._installer.locked():
                for obj in candidates:
                    if refused(object_versions(obj)):  # not replaced meanwhile
                        _disk.unlink_quietly(obj.path)
                        if obj.is_blob:  # after the blob: never a blob without it
                            _disk.unlink_quietly(obj.key_file)
                        removed.append(obj)
            for directory in {obj.path.parent for obj in removed}:
                _disk.fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"could not purge store {self._store_name!r}: {exc}") from exc
        return {obj.name for obj in removed}

    def _refused(self) -> Callable[[set[int]], set[int]]:
        """Which of an object's versions make it unreadable for good, as the key record says."""
        inactive = set(self._versions.inactive())
        below: dict[int, bool] = {}

        def refused(version: int) -> bool:
            if version in inactive:
                return True
            if version not in below:
                below[version] = self._versions.below_floor(version)
            return below[version]

        return lambda versions: {version for version in versions if refused(version)}
