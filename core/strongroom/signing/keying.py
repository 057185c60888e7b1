"""The request-signing MAC key: derived from the ``signing`` keyset, never a key that encrypts.

``mac = HKDF-SHA256(ikm = signing data key version n, salt = none,
info = "strongroom request-signing v1" || 0x00 || account || 0x00 || n)``,
32 bytes.  The data key itself encrypts nothing, and the label keeps the MAC
key apart from anything else ever derived from it.  Its wire id is
``<key_id>.v<n>``: rotating the keyset gives a new id, which the server
adds before it retires the old one.
"""

from __future__ import annotations

from strongroom.errors import UsageError

__all__ = ["MAC_INFO", "derive_mac_key", "version_of", "wire_key_id"]

MAC_INFO = b"strongroom request-signing v1"


def derive_mac_key(data_key: bytes | bytearray | memoryview, account: str, version: int) -> bytes:
    """The 32-byte MAC key of one version of the account's ``signing`` keyset."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"\x00".join((MAC_INFO, account.encode(), str(version).encode()))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


def wire_key_id(key_id: str, version: int) -> str:
    """The key id sent with requests: the configured device name and the key version."""
    return f"{key_id}.v{version}"


def version_of(wire_id: str) -> int:
    """The key version a wire key id names.

    :raises strongroom.errors.UsageError: it names none.
    """
    _, dot_v, number = wire_id.rpartition(".v")
    if not dot_v or not (number.isascii() and number.isdigit()) or number.startswith("0"):
        raise UsageError(f"key id {wire_id!r} names no key version")
    return int(number)
