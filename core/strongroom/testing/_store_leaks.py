"""The part of ``StoreContract`` that reads what the store wrote: no key, no value in the clear.

The store's medium is scanned byte by byte: every file under
``binding.directory`` and under each path :meth:`LeakContract.stored_paths`
names (a database kept elsewhere, a log), file names included.  A canary
record key or value found there, as raw bytes, reversed, XORed with any one
byte, hex (either case), base64 (standard or URL-safe), base32 (standard or
hex alphabet, either case; both at every alignment) or UTF-16, fails the test.

What a store must do, and what it need not:

- No record key and no value may reach the medium in the clear, at any
  time: not while writing, not in a temporary or journal file, not after
  re-encryption, not after the store closed.  That holds for overwritten
  and deleted values too, since they were written once.  The scan runs
  between operations, so it cannot see a file written and removed within
  one: the rule holds there too, but only review can check it.
- Deleted or overwritten *ciphertext* may stay on the medium (free pages of
  a database, a journaling filesystem): the contract does not ask a store
  to scrub it.  Erasing data beyond recovery is crypto-shredding, destroying
  the key version (``test_destroyed_key_version_makes_data_unavailable``).
- The scan must see the store's data: a store whose files hold fewer bytes
  than the values it was given fails, asking for :meth:`stored_paths`.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from strongroom.store import Store

__all__ = ["Canary", "LeakContract", "encodings", "scan"]


def _aligned_pieces(
    data: bytes, block: int, chars: int, encoders: Iterable[Callable[[bytes], bytes]]
) -> Iterator[bytes]:
    """``data`` encoded at each alignment a ``block``-byte to ``chars``-character code has.

    Only the groups made of ``data``'s bytes alone are kept, so the piece is
    found whatever surrounds ``data`` in the encoded stream.
    """
    for shift in range(block):
        for encode in encoders:
            encoded = encode(b"\0" * shift + data)
            start = chars if shift else 0
            piece = encoded[start : (shift + len(data)) // block * chars]
            if len(piece) >= 16:
                yield piece


def _base64_pieces(data: bytes) -> Iterator[bytes]:
    return _aligned_pieces(data, 3, 4, (base64.b64encode, base64.urlsafe_b64encode))


def _base32_pieces(data: bytes) -> Iterator[bytes]:
    for piece in _aligned_pieces(data, 5, 8, (base64.b32encode, base64.b32hexencode)):
        yield piece
        yield piece.lower()


def encodings(canary: bytes) -> dict[str, bytes]:
    """Each form ``canary`` is looked for in: raw, reversed, XORed with one byte, hex,
    base64, base32, UTF-16 (for text)."""
    forms = {
        "raw": canary,
        "reversed": canary[::-1],
        "hex": canary.hex().encode(),
        "HEX": canary.hex().upper().encode(),
    }
    for key in range(1, 256):
        forms[f"xor/{key:02x}"] = bytes(byte ^ key for byte in canary)
    for index, piece in enumerate(_base64_pieces(canary)):
        forms[f"base64/{index}"] = piece
    for index, piece in enumerate(_base32_pieces(canary)):
        forms[f"base32/{index}"] = piece
    try:
        text = canary.decode("utf-8")
    except UnicodeDecodeError:
        return forms
    forms["utf-16-le"] = text.encode("utf-16-le")
    forms["utf-16-be"] = text.encode("utf-16-be")
    return forms


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


def scan(roots: Iterable[Path], needles: dict[str, bytes]) -> tuple[list[str], int]:
    """Where each needle shows in the files under ``roots`` or their names; and the bytes read.

    A finding reads ``"<what> (<form>) in <path>"``; a file that vanished
    while being scanned is skipped.
    """
    findings: list[str] = []
    total = 0
    for root in roots:
        for path in _files(root):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            total += len(data)
            name = os.fsencode(path.relative_to(root) if path != root else path.name)
            for what, needle in needles.items():
                if needle in data:
                    findings.append(f"{what} in {path}")
                elif needle in name:
                    findings.append(f"{what} in the name {path}")
    return findings, total


@dataclass(frozen=True)
class Canary:
    """A record key and a value no store could hold by chance, and their searchable forms."""

    key: str
    value: bytes

    @classmethod
    def make(cls, label: str, size: int = 96) -> Canary:
        token = secrets.token_hex(8)
        body = os.urandom(max(size - 40, 48))
        value = f"canary-value-{label}-{token}:".encode() + body
        return cls(f"canary-key-{label}-{token}", value)

    def key_needles(self) -> dict[str, bytes]:
        return {
            f"key {self.key!r} ({form})": needle
            for form, needle in encodings(self.key.encode()).items()
        }

    def value_needles(self) -> dict[str, bytes]:
        """The value's marker and windows of its random body, from start, middle and end."""
        marker = self.value[: self.value.index(b":") + 1]
        body = self.value[len(marker) :]
        windows = {"marker": marker}
        for at in sorted({0, len(body) // 2 - 24, len(body) - 48}):
            windows[f"bytes {at}..{at + 48}"] = body[at : at + 48]
        return {
            f"value of {self.key!r}, {part} ({form})": needle
            for part, window in windows.items()
            for form, needle in encodings(window).items()
        }


class LeakContract:
    """Mixed into ``StoreContract``; uses its ``store`` fixture and ``blob_size``."""

    blob_size: ClassVar[int]  # StoreContract.blob_size

    def stored_paths(self, store: Store) -> Iterable[Path]:
        """Where the store writes besides ``store.binding.directory``: files or directories.

        Override it if the store keeps anything elsewhere (a database file, a
        cache, a log); everything there is scanned too.
        """
        del store
        return ()

    def assert_nothing_revealed(
        self,
        store: Store,
        canaries: Iterable[Canary],
        *,
        values: bool = True,
        keys: bool = True,
        written: int = 0,
    ) -> None:
        """Fail if the medium shows a canary's key or value, or holds under ``written`` bytes."""
        needles: dict[str, bytes] = {}
        for canary in canaries:
            if keys:
                needles.update(canary.key_needles())
            if values:
                needles.update(canary.value_needles())
        roots = [store.binding.directory, *self.stored_paths(store)]
        findings, total = scan(roots, needles)
        assert not findings, "the store's medium shows in the clear:\n" + "\n".join(findings)
        assert total >= written, (
            f"the contract scanned {total} bytes under {[str(r) for r in roots]} but the store "
            f"was given {written} bytes of values: name where it writes in stored_paths()"
        )

    def _fill(self, store: Store, canaries: list[Canary]) -> int:
        """Store the canaries in every way a store takes values; return the bytes given."""
        first, second, third, blob = canaries
        store.put(first.key, first.value)
        store.put_many([(second.key, second.value), (third.key, third.value)])
        pieces = (blob.value[at : at + 65536] for at in range(0, len(blob.value), 65536))
        store.put_blob(blob.key, pieces)
        return sum(len(canary.value) for canary in canaries)

    def _canaries(self) -> list[Canary]:
        return [
            Canary.make("record"),
            Canary.make("many-1"),
            Canary.make("many-2"),
            Canary.make("blob", size=self.blob_size),
        ]

    def test_the_medium_shows_no_record_key(self, store: Store) -> None:
        canaries = self._canaries()
        self._fill(store, canaries)
        self.assert_nothing_revealed(store, canaries, values=False)
        store.binding.keys.rotate(store.binding.purpose)
        list(store.reencrypt())
        self.assert_nothing_revealed(store, canaries, values=False)
        assert list(store.keys("canary-key-")) == sorted(canary.key for canary in canaries)
        store.close()
        self.assert_nothing_revealed(store, canaries, values=False)

    def test_the_medium_shows_no_value(self, store: Store) -> None:
        canaries = self._canaries()
        written = self._fill(store, canaries)
        self.assert_nothing_revealed(store, canaries, keys=False, written=written)
        store.binding.keys.rotate(store.binding.purpose)
        list(store.reencrypt())
        self.assert_nothing_revealed(store, canaries, keys=False, written=written)
        assert store.get(canaries[0].key) == canaries[0].value
        store.close()
        self.assert_nothing_revealed(store, canaries, keys=False, written=written)

    def test_overwritten_and_deleted_data_leaves_nothing_in_the_clear(self, store: Store) -> None:
        replaced, deleted, blob, blob_replaced = (
            Canary.make(label) for label in ("replaced", "deleted", "blob", "to-record")
        )
        store.put(replaced.key, replaced.value)
        store.put(deleted.key, deleted.value)
        store.put_blob(blob.key, [blob.value])
        store.put_blob(blob_replaced.key, [blob_replaced.value])
        store.put(replaced.key, b"new value")
        store.delete(deleted.key)
        store.delete(blob.key)
        store.put(blob_replaced.key, b"a record now")
        list(store.reencrypt())
        assert sorted(store.keys()) == sorted([replaced.key, blob_replaced.key])
        self.assert_nothing_revealed(store, [replaced, deleted, blob, blob_replaced])
