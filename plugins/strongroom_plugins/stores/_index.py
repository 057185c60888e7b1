"""The ``files`` store's name index: which key each 64-hex file name holds.

Listing used to decrypt every record (or blob key file) to learn its key.
A file name is an HMAC of its key under a name key that never changes, so
"name *n* holds key *k*" stays true for as long as anything is stored
under *n*: the index caches those facts, never which form or value a key
has, nor whether it exists.  What exists is always read from the
directories (a scan under the store's lock, no decryption), and the index
only answers for names found there; a name it does not know is opened and
verified as before, and a name it knows that is gone is dropped.  An
index that is missing, older than what was written since, torn, tampered
with or sealed under a version that can no longer be opened is therefore
never wrong, only incomplete, and is rebuilt by the next listing.  A
listing saves only names of objects under the primary version, so names
of objects a forced retire or destroy shreds do not outlive them here
(``_listing``); :meth:`NameIndex.reseal` keeps what it holds.

It is one sealed object, ``index`` in the store's directory, under the
store keyset's primary version, bound to (account, store,
``names-index``): no key name is ever in the clear, and a file put back
from another store or account fails authentication.  It is written like
any object (private temporary file, fsync, rename, directory fsync), so a
crash leaves the old index or the new one.  Plaintext (``docs/formats.md``):
``SRNX``, a format byte 1, a u32 BE count *n*, then three runs: the *n*
names' 32 raw bytes each, their keys' *n* u16 BE UTF-8 lengths, then the
keys' UTF-8, all sorted by name.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
from pathlib import Path

from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    StoreError,
    StrongroomError,
)
from strongroom.formats import peek_key_version
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._sealing import PEEK, Sealer, read_object

__all__ = ["INDEX_FILE", "INDEX_RECORD", "NameIndex"]

log = logging.getLogger(__name__)

INDEX_FILE = "index"
#: The ``record`` field of the index's context; no object name can take it.
INDEX_RECORD = "names-index"
_MAGIC = b"SRNX\x01"
_COUNT = struct.Struct(">I")
_NAME_BYTES = 32


class NameIndex:
    """Loads and saves one store's name index; every failure to read it means "rebuild"."""

    def __init__(self, root: Path, sealer: Sealer, store_name: str) -> None:
        self.path = root / INDEX_FILE
        self._sealer = sealer
        self._store_name = store_name

    def load(self) -> dict[str, str]:
        """``{64-hex name: key}`` as last saved; empty if there is no usable index.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        try:
            data = read_object(self.path)
            if data is None:
                return {}
            plaintext, _stale = self._sealer.open(data, INDEX_RECORD)
            return _parse(plaintext)
        except KeyLockedError:
            raise
        except KeyUnavailableError:  # sealed under a version retired or destroyed since
            log.debug(
                "store %r: its name index is under a shredded key; rebuilding", self._store_name
            )
        except StrongroomError:
            log.warning(
                "store %r: its name index failed verification; rebuilding", self._store_name
            )
        return {}

    def reseal(self, target: int) -> None:
        """Seal the index again if it is under a version older than ``target``.

        A re-encryption pass calls this before it raises the floor, which
        would otherwise make the index unreadable and the next listing slow.
        """
        try:
            data = read_object(self.path)
            stale = data is not None and peek_key_version(data[:PEEK]) < target
        except StrongroomError:  # unreadable: the next listing rebuilds it
            return
        if stale and (entries := self.load()):
            self.save(entries)

    def save(self, entries: dict[str, str]) -> bool:
        """Replace the index with ``entries``, best effort: a failure only costs speed.

        Returns whether it was saved.
        """
        try:
            data_key = self._sealer.primary()
            sealed = self._sealer.seal(data_key, _format(entries), INDEX_RECORD)
            temp = _disk.write_temp(self.path, sealed)
            try:
                os.replace(temp, self.path)
            except BaseException:
                _disk.unlink_quietly(temp)
                raise
            _disk.fsync_dir(self.path.parent)
        except KeyLockedError:
            raise
        except (OSError, StrongroomError) as exc:
            log.debug("store %r: could not save its name index: %s", self._store_name, exc)
            return False
        return True

    def forget(self, names: set[str]) -> None:
        """Drop ``names`` (purged objects) so their keys do not outlive them here."""
        entries = self.load()
        if names & entries.keys():
            self.save({name: key for name, key in entries.items() if name not in names})

    def forget_or_drop(self, names: set[str]) -> None:
        """:meth:`forget`, or remove the index where it cannot be opened (a locked account).

        The index is only ever incomplete, never wrong: the next listing
        rebuilds it.
        """
        try:
            entries = self.load()
            if not names & entries.keys():
                return
            if self.save({name: key for name, key in entries.items() if name not in names}):
                return
        except KeyUnavailableError:
            pass
        try:
            _disk.unlink_quietly(self.path)
            _disk.fsync_dir(self.path.parent)
        except OSError as exc:
            raise StoreError(
                f"store {self._store_name!r}: could not remove its name index: {exc}"
            ) from exc


def _format(entries: dict[str, str]) -> bytes:
    names = sorted(entries)
    encoded = [entries[name].encode("utf-8") for name in names]
    return b"".join(
        [
            _MAGIC,
            _COUNT.pack(len(names)),
            bytes.fromhex("".join(names)),
            struct.pack(f">{len(names)}H", *map(len, encoded)),
            *encoded,
        ]
    )


def _parse(plaintext: bytes) -> dict[str, str]:
    """:raises strongroom.errors.IntegrityError: it is not laid out as ``_format`` lays it out."""
    malformed = IntegrityError("a name index is malformed")
    if not plaintext.startswith(_MAGIC) or len(plaintext) < len(_MAGIC) + _COUNT.size:
        raise malformed
    (count,) = _COUNT.unpack_from(plaintext, len(_MAGIC))
    names_at = len(_MAGIC) + _COUNT.size
    lengths_at = names_at + _NAME_BYTES * count
    keys_at = lengths_at + 2 * count
    if keys_at > len(plaintext):
        raise malformed
    hexed = plaintext[names_at:lengths_at].hex()
    lengths = struct.unpack_from(f">{count}H", plaintext, lengths_at)
    ends = list(itertools.accumulate(lengths, initial=keys_at))
    if ends[-1] != len(plaintext):
        raise malformed
    try:
        keys = [plaintext[start:end].decode("utf-8") for start, end in itertools.pairwise(ends)]
    except UnicodeDecodeError:
        raise malformed from None
    return dict(zip((hexed[i : i + 64] for i in range(0, 64 * count, 64)), keys, strict=True))
