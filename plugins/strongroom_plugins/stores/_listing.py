"""Listing the ``files`` store's keys: the directories say which exist, the index names them.

A listing takes the names present in both directories at one moment under
the store's lock (``_lookup``), answers each from the name index
(``_index``) where it can, and opens and verifies only the objects of
names the index does not know yet, as every listing once did for all of
them.  It then saves the index if it learnt or dropped a name.  While some
key version is retired or destroyed, the headers of every object are
peeked as well, so that shredded objects stay out of the listing and out
of the index.

An object is verified when its name first enters the index; from then on
a listing trusts the sealed index for its key, and reading the value
verifies the object itself.
"""

from __future__ import annotations

from strongroom_plugins.stores._index import NameIndex
from strongroom_plugins.stores._layout import is_name
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

        :raises strongroom.errors.IntegrityError: an object not yet indexed
            fails verification.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        self._names.derive()  # a locked account fails here, before any file is read
        inactive = set(versions.inactive())
        present = self._lookup.snapshot()
        indexed = self._index.load()
        if inactive:  # every object's header must be seen: shredded ones stay out
            listed = self._resolve(present, indexed, inactive)
        else:
            known = present.keys() & indexed.keys()
            listed = indexed if len(known) == len(indexed) else {n: indexed[n] for n in known}
            unknown = {name: present[name] for name in present.keys() - known}
            if unknown:
                listed = {**listed, **self._resolve(unknown, {}, inactive)}
        if listed != indexed:
            self._index.save(listed)
        return list(listed.values())

    def _resolve(
        self, present: dict[str, bool], indexed: dict[str, str], inactive: set[int]
    ) -> dict[str, str]:
        """Each name's key: from ``indexed``, else from its object, opened and verified."""
        resolved: dict[str, str] = {}
        for name, is_blob in present.items():
            key = indexed.get(name)
            if key is None and not is_name(name):
                continue  # not an object of ours: ignored, as every scan ignores it
            found = self._lookup.current(self._lookup.object(name, is_blob))
            if found is None or found.versions & inactive:
                continue
            if key is None:
                if found.obj.is_blob:
                    key = self._sealer.open_key_file(found.obj, found.data)
                else:
                    key = self._sealer.open_record(found.obj, found.data)[0]
            resolved[name] = key
        return resolved
