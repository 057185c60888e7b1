"""SPKI pins: what a config names a server's public key by.

A pin is ``sha256/`` followed by the standard base64 (with padding) of the
SHA-256 of a certificate's DER-encoded SubjectPublicKeyInfo, the form
OkHttp, Android's Network Security Config and HPKP use.  It equals::

    openssl x509 -pubkey -noout -in cert.pem \\
      | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64

A pin names a key, not a certificate: a certificate renewed on the same
key keeps its pin.  ``strongroom pin`` prints the pins of a server's chain.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from strongroom.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["PIN_ALGORITHM", "parse_pin", "spki_digest", "spki_pin"]

#: The only hash a pin may use.
PIN_ALGORITHM = "sha256"
_PREFIX = PIN_ALGORITHM + "/"
_DIGEST_SIZE = 32
_ENCODED_SIZE = 44  # base64 of 32 bytes, one "=" of padding


def spki_digest(certificate: x509.Certificate) -> bytes:
    """SHA-256 of ``certificate``'s DER-encoded SubjectPublicKeyInfo (32 bytes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def spki_pin(certificate: x509.Certificate) -> str:
    """``certificate``'s pin: ``"sha256/" + base64(sha256(SubjectPublicKeyInfo DER))``."""
    return _PREFIX + base64.b64encode(spki_digest(certificate)).decode("ascii")


def parse_pin(text: object, *, source: str | None = None, location: str | None = None) -> bytes:
    """The 32-byte SHA-256 digest a pin string names, for comparing with :func:`spki_digest`.

    Only the exact form :func:`spki_pin` prints is accepted: ``sha256/``,
    then 44 characters of standard base64 (``+`` and ``/``, one ``=`` of
    padding) encoding 32 bytes, nothing around it.  The pin itself is
    quoted in the error (it is public), so a typo is easy to find.

    :param source: the config file the pin comes from, for the message.
    :param location: the table and key there, for the message.
    :raises ConfigError: anything else: another hash (``sha1/``), no
        prefix, URL-safe base64, a wrong length, whitespace, a non-string.
    """

    def refuse(why: str) -> ConfigError:
        return ConfigError(
            f"{why}; a pin is 'sha256/' and the base64 of 32 bytes, as 'strongroom pin' prints it",
            source=source,
            location=location,
        )

    if not isinstance(text, str):
        raise refuse(f"a pin must be a string, not {type(text).__name__}")
    shown = repr(text if len(text) <= 80 else text[:80] + "...")
    algorithm, slash, encoded = text.partition("/")
    if not slash or not algorithm or not algorithm.isalnum():
        raise refuse(f"{shown} is not a pin: no 'sha256/' prefix")
    if algorithm != PIN_ALGORITHM:
        raise refuse(f"{shown}: pins use sha256, not {algorithm!r}")
    if len(encoded) != _ENCODED_SIZE:
        raise refuse(f"{shown}: {len(encoded)} characters after 'sha256/', not {_ENCODED_SIZE}")
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise refuse(f"{shown}: not standard base64") from None
    if len(digest) != _DIGEST_SIZE or base64.b64encode(digest).decode("ascii") != encoded:
        raise refuse(f"{shown}: not the canonical base64 of 32 bytes")
    return digest
