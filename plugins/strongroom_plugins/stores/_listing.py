"""Listing the ``files`` store's keys: the directories say which exist, the index names them.

A listing takes the names present in both directories at one moment under
the store's lock (``_lookup``), answers each from the name index
(``_index``) where it can, and opens and verifies only the objects of
names the index does not know yet, as every listing once did for all of
them.

For a name the index knows, the headers of its files are still peeked
(16 bytes each, nothing decrypted).  An object under a retired or
destroyed version is left out (shredded: see ``unreadable``); one whose
header is not a strongroom object's, or names a version the keyset never
had or one older than the floor, is opened and verified as if the index did
not know it, so it is refused exactly as without an index: a name the
index once held cannot vouch for any bytes put at it since.

The index is then saved if it changed, naming only objects whose files are
all under the primary version: a name under an older version, which a
forced retire or destroy could shred, never enters an index sealed under a
newer one.  Objects not yet brought to the primary are therefore opened on
every listing until a read or a re-encryption pass re-seals them.

An object is verified when its name first enters the index; from then on
a listing trusts the sealed index for its key, and reading the value
verifies the object itself.
"""

from __future__ import annotations

from strongroom.errors import IntegrityError
from strongroom_plugins.stores._index import NameIndex
from strongroom_plugins.stores._layout import StoredObject, is_name
from strongroom_plugins.stores._lookup import Lookup
from strongroom_plugins.stores._names import NameKeys
from strongroom_plugins.stores._sealing import Sealer
from strongroom_plugins.stores._versions import KeyVersions

__all__ = ["Lister"]


class Lister:
    """Lists one store's keys through its name index."""

    def __init__(self, lookup: Lookup, index: NameIndex, sealer: Sealer, names: NameKeys) -> None:
        self._lookup = lookup
        self._index = index
        self._sealer = sealer
        self._names = names

    def keys(self, versions: KeyVersions) -> list[str]:
        """Every readable key in the store, unsorted.

        :raises strongroom.errors.IntegrityError: an object fails verification
            (one not yet indexed, or an indexed one whose header is implausible).
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        self._names.derive()  # a locked account fails here, before any file is read
        inactive = set(versions.inactive())
        primary, floor = versions.primary(), versions.floor()
        present = self._lookup.snapshot()
        indexed = self._index.load()
        listed: dict[str, str] = {}
        to_index: dict[str, str] = {}
        for name, is_blob in present.items():
            key = indexed.get(name)
            if key is None and not is_name(name):
                continue  # not an object of ours: ignored, as every scan ignores it
            resolved = self._resolve(
                self._lookup.object(name, is_blob), key, inactive, primary, floor
            )
            if resolved is not None:
                listed[name], found_versions = resolved
                if found_versions == {primary}:
                    to_index[name] = listed[name]
        if to_index != indexed:
            self._index.save(to_index)
        return list(listed.values())

    def _resolve(
        self, obj: StoredObject, key: str | None, inactive: set[int], primary: int, floor: int
    ) -> tuple[str, frozenset[int]] | None:
        """The key of ``obj``'s name and its files' versions; ``None`` if gone or shredded.

        A name the index knows (``key``) has only its headers peeked; one it
        does not, or whose headers are implausible, is opened and verified.
        """
        if key is not None:
            try:
                peeked = self._lookup.peek(obj)
            except IntegrityError:  # not a strongroom object: verified below, and refused
                peeked = None
            if peeked is not None and _plausible(peeked[1], primary, floor):
                return None if peeked[1] & inactive else (key, peeked[1])
            if peeked is not None and peeked[1] & inactive:
                return None  # shredded: left out, named by ``unreadable``
        found = self._lookup.current(obj)
        if found is None or found.versions & inactive:
            return None
        if found.obj.is_blob:
            return self._sealer.open_key_file(found.obj, found.data), found.versions
        return self._sealer.open_record(found.obj, found.data)[0], found.versions


def _plausible(found: frozenset[int], primary: int, floor: int) -> bool:
    """Whether header versions could be opened: the keyset had them and none is below the floor.

    Retired or destroyed versions are checked apart (their objects are left out).
    """
    return all(max(floor, 1) <= version <= primary for version in found)
