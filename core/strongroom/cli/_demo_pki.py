"""A throwaway PKI for ``strongroom demo``: a root CA and a server certificate for 127.0.0.1.

Made with ``cryptography`` (a core dependency) and written as PEM files: the
root alone (what a device trusts, ``ca_bundle``), the leaf (what the server
presents) and the leaf's key (mode 0600).  Nothing here is for production:
the keys live for one demo, in its temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strongroom.pins import spki_pin

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["DemoPki", "make_demo_pki"]

#: How long the demo's certificates are valid either side of now.
_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class DemoPki:
    """The files a demo server and its devices use, and the SPKI pins of both certificates."""

    ca_bundle: Path
    cert_chain: Path
    key: Path
    root_pin: str
    leaf_pin: str


def make_demo_pki(directory: Path) -> DemoPki:
    """A root CA and a leaf for ``127.0.0.1`` signed by it, written under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strongroom demo CA")])
    root = (
        _builder(root_name, root_name, root_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    leaf = (
        _builder(leaf_name, root_name, leaf_key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([address]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    ca_bundle = directory / "ca.pem"
    cert_chain = directory / "server-chain.pem"
    key = directory / "server-key.pem"
    ca_bundle.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    cert_chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(
            leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return DemoPki(ca_bundle, cert_chain, key, spki_pin(root), spki_pin(leaf))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALIDITY)
        .not_valid_after(now + _VALIDITY)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
