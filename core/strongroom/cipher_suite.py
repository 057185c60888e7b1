"""The ``CipherSuite`` slot: an AEAD with a stable identity.

A suite is a factory of keyed AEAD objects.  Formats record the suite's
``code`` in an authenticated header, so both ``name`` and ``code`` are
permanent once data has been written with them.  Codes ``0x0001``-``0x7fff``
are reserved for strongroom's own suites; third-party suites take codes from
``0x8000`` up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from strongroom.backend import Backend, S_co
from strongroom.errors import AuthenticationError

__all__ = ["CipherSuite", "KeyedAead", "ReadableBuffer", "UncheckedDecrypt"]

#: What suites accept as plaintext and ciphertext.
ReadableBuffer = bytes | bytearray | memoryview
#: :meth:`KeyedAead.unchecked_decrypt`'s answer: a ``decrypt(nonce, data, aad)``
#: and the exceptions it raises when a tag does not verify.
UncheckedDecrypt = tuple[
    Callable[[bytes, ReadableBuffer, bytes], bytes], tuple[type[Exception], ...]
]


class KeyedAead(ABC):
    """An AEAD bound to one key.  Build it once and reuse it in hot loops.

    Ciphertexts are ``encrypted data || tag``; ``tag_size`` bytes longer than
    the plaintext.
    """

    @abstractmethod
    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        """Encrypt and authenticate ``plaintext``, binding ``aad``.

        The caller guarantees that ``nonce`` is never reused with this key.

        :raises ValueError: ``nonce`` has the wrong length.
        """

    @abstractmethod
    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        """Verify and decrypt; nothing is returned unless the tag verifies.

        :raises strongroom.errors.AuthenticationError: the tag does not verify
            (wrong key, wrong nonce, wrong ``aad`` or altered data alike).
        :raises ValueError: ``nonce`` has the wrong length.
        """

    def encrypt_into(
        self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        """Encrypt into ``out``, which must be exactly ``len(plaintext) + tag_size`` long.

        The default copies; suites whose library writes in place override it.

        :raises ValueError: ``nonce`` or ``out`` has the wrong length.
        """
        sealed = self.encrypt(nonce, plaintext, aad)
        if len(out) != len(sealed):
            raise ValueError("output buffer has the wrong length")
        out[:] = sealed

    def decrypt_into(
        self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        """Verify and decrypt into ``out`` (``len(ciphertext) - tag_size`` long).

        On failure ``out`` holds only zeros: no unauthenticated plaintext is
        left behind.

        :raises strongroom.errors.AuthenticationError: the tag does not verify.
        :raises ValueError: ``nonce`` or ``out`` has the wrong length.
        """
        try:
            opened = self.decrypt(nonce, ciphertext, aad)
        except AuthenticationError:
            out[:] = bytes(len(out))
            raise
        if len(out) != len(opened):
            raise ValueError("output buffer has the wrong length")
        out[:] = opened

    def unchecked_decrypt(self) -> UncheckedDecrypt:
        """The quickest :meth:`decrypt` for a hot loop, and what it raises on a bad tag.

        The callable may skip :meth:`decrypt`'s own checks and raise the
        library's exception instead of ``AuthenticationError``: its caller
        turns every exception of the returned tuple, and ``ValueError``, into
        ``AuthenticationError``.  Given what a truncated object gives (a
        nonce shorter than ``nonce_size`` and no ciphertext, or a ciphertext
        shorter than a tag) it must raise one of them, as :meth:`decrypt`
        does.  The default is ``(self.decrypt, ())``; a suite overrides it
        when its library's ``decrypt`` refuses all that by itself.
        """
        return self.decrypt, ()

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} (key hidden)>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError(f"{type(self).__qualname__} holds a key and cannot be pickled")


class CipherSuite(Backend[S_co], ABC):
    """An AEAD algorithm with fixed sizes and a permanent identity.

    Subclasses set the class attributes and implement :meth:`keyed`.  A suite
    is stateless and safe to share between threads.
    """

    #: The user-visible name, equal to the entry-point name.
    name: ClassVar[str]
    #: A 16-bit code written into ciphertext headers.
    code: ClassVar[int]
    key_size: ClassVar[int]
    nonce_size: ClassVar[int]
    tag_size: ClassVar[int] = 16

    @abstractmethod
    def keyed(self, key: bytes) -> KeyedAead:
        """Return an AEAD bound to ``key``.

        :raises ValueError: ``key`` is not ``key_size`` bytes long.
        """

    def encrypt(
        self, key: bytes, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b""
    ) -> bytes:
        """One-shot :meth:`KeyedAead.encrypt`.

        :raises ValueError: ``key`` or ``nonce`` has the wrong length.
        """
        return self.keyed(key).encrypt(nonce, plaintext, aad)

    def decrypt(
        self, key: bytes, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b""
    ) -> bytes:
        """One-shot :meth:`KeyedAead.decrypt`.

        :raises strongroom.errors.AuthenticationError: the tag does not verify.
        :raises ValueError: ``key`` or ``nonce`` has the wrong length.
        """
        return self.keyed(key).decrypt(nonce, ciphertext, aad)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.name}>"
