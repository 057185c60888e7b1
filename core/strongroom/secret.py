"""``Secret``: key material in a handle that refuses to leak.

A handle never shows its bytes in a repr, cannot be pickled or copied, and
is zeroed when wiped (as far as Python allows: copies the interpreter or a
library made along the way are out of reach).  Code that needs the bytes
borrows a ``memoryview`` of the handle's own buffer, which cryptography and
PyNaCl accept without copying; taking them out as ``bytes`` needs the
explicitly named :meth:`Secret.export_raw`.
"""

from __future__ import annotations

import hmac
import os

from strongroom.errors import KeyLockedError

__all__ = ["Secret"]


class Secret:
    """A secret byte string, identified by a label that is safe to show."""

    __slots__ = ("_buffer", "_wiped", "label")

    def __init__(self, material: bytes | bytearray | memoryview, *, label: str) -> None:
        """Copy ``material`` into the handle.  A ``bytearray`` source is zeroed afterwards."""
        self._buffer = bytearray(material)
        self._wiped = False
        self.label = label
        if isinstance(material, bytearray):
            material[:] = bytes(len(material))

    @classmethod
    def generate(cls, size: int, *, label: str) -> Secret:
        """A fresh random secret of ``size`` bytes from the OS CSPRNG."""
        return cls(bytearray(os.urandom(size)), label=label)

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def wiped(self) -> bool:
        return self._wiped

    def view(self) -> memoryview:
        """Borrow the bytes without copying; do not keep the view past a wipe.

        :raises strongroom.errors.KeyLockedError: the secret was wiped.
        """
        if self._wiped:
            raise KeyLockedError(f"{self.label} is no longer available (locked or wiped)")
        return memoryview(self._buffer)

    def export_raw(self, *, reason: str) -> bytes:
        """Copy the bytes out, for a caller that must hand them to something else.

        ``reason`` documents the call site; it is not stored.

        :raises strongroom.errors.KeyLockedError: the secret was wiped.
        """
        if not reason:
            raise ValueError("say why the raw bytes are exported")
        return bytes(self.view())

    def equals(self, other: Secret) -> bool:
        """Constant-time comparison of two secrets' bytes."""
        return hmac.compare_digest(self.view(), other.view())

    def wipe(self) -> None:
        """Overwrite the buffer with zeros; the handle is unusable afterwards."""
        if not self._wiped:
            self._buffer[:] = bytes(len(self._buffer))
            self._wiped = True

    def __del__(self) -> None:
        self.wipe()

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else f"{len(self._buffer)} bytes"
        return f"<Secret {self.label} ({state}, hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        raise TypeError("a Secret cannot be copied")

    def __deepcopy__(self, memo: object) -> Secret:
        raise TypeError("a Secret cannot be copied")
