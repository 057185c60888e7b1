"""Data keys sealed under the master key, each bound to where it belongs.

Every data key version is kept in the record sealed (the sealed format,
suite :data:`WRAP_SUITE`, the master key's version as key version) and
bound to (account, purpose, version): a wrapped key copied to another
keyset, version or account fails to open.  Kept apart from
``AccountKeys`` so the one binding is written down once, for sealing and
opening alike.
"""

from __future__ import annotations

from collections.abc import Callable

from strongroom.cipher_suite import CipherSuite
from strongroom.formats.context import Context
from strongroom.formats.sealed import open_sealed, seal
from strongroom.secret import Secret

__all__ = ["MASTER", "WRAP_SUITE", "SuiteResolver", "open_data_key", "seal_data_key"]

#: The purpose of the master key, in providers' wrap contexts and in hooks.
MASTER = "master"
#: The suite that wraps data keys under the master key.
WRAP_SUITE = "aes-256-gcm"

SuiteResolver = Callable[[str], CipherSuite]


def seal_data_key(
    suite_for: SuiteResolver,
    master: Secret,
    master_version: int,
    material: Secret,
    *,
    account: str,
    purpose: str,
    version: int,
) -> bytes:
    """``material``, the data key ``purpose`` #``version``, sealed under ``master``."""
    return seal(
        suite_for(WRAP_SUITE),
        master.view(),
        master_version,
        material.view(),
        _wrap_context(account, purpose, version),
    )


def open_data_key(
    suite_for: SuiteResolver,
    master: Secret,
    wrapped: bytes,
    *,
    account: str,
    purpose: str,
    version: int,
) -> Secret:
    """The data key ``purpose`` #``version`` that ``wrapped`` seals under ``master``.

    :raises strongroom.errors.IntegrityError: it is not a sealed object.
    :raises strongroom.errors.AuthenticationError: it was altered, or sealed
        for another account, purpose or version.
    """

    def master_for(_version: int) -> tuple[CipherSuite, memoryview]:
        return suite_for(WRAP_SUITE), master.view()

    plain = open_sealed(wrapped, master_for, _wrap_context(account, purpose, version))
    return Secret(bytearray(plain), label=f"{account} {purpose} key v{version}")


def _wrap_context(account: str, purpose: str, version: int) -> Context:
    return Context(account=account, store="keys", record=f"{purpose}#{version}")
