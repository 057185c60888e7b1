"""The purposes a keyset can serve, named in one place.

A purpose names one keyset of an account's hierarchy, and is bound into
every wrap of its keys, so it is validated wherever one enters: a
malformed or unknown purpose is refused before it reaches the record.

=====================  =====================================================
``files``              files encrypted with ``strongroom encrypt``
``signing``            keys that sign sync requests
``store:<name>``       the data of the store ``[stores.<name>]``
``store:<name>:names`` keys of that store's record names; version 1 only,
                       never rotated (every file name would change)
=====================  =====================================================

``master`` names the master key in provider wrap contexts and hooks; it is
not a keyset.
"""

from __future__ import annotations

import re

from strongroom.config import NAME_PATTERN
from strongroom.errors import UsageError

__all__ = [
    "FILES",
    "MASTER",
    "SIGNING",
    "check_purpose",
    "is_rotatable",
    "names_purpose",
    "store_purpose",
]

#: The master key, in provider wrap contexts and lifecycle hooks.
MASTER = "master"
#: The keyset of ``strongroom encrypt`` and ``decrypt``.
FILES = "files"
#: The keyset of request signing.
SIGNING = "signing"

_STORE_PREFIX = "store:"
_NAMES_SUFFIX = ":names"
_NAME = NAME_PATTERN.removeprefix("^").removesuffix("$")
_PURPOSE = re.compile(rf"{FILES}|{SIGNING}|{_STORE_PREFIX}{_NAME}(?:{_NAMES_SUFFIX})?")


def store_purpose(store: str) -> str:
    """The keyset that encrypts the data of store ``store``."""
    return f"{_STORE_PREFIX}{store}"


def names_purpose(store: str) -> str:
    """The keyset whose version 1 keys the record names of store ``store``."""
    return f"{_STORE_PREFIX}{store}{_NAMES_SUFFIX}"


def check_purpose(purpose: str) -> str:
    """Return ``purpose`` if it is well formed.

    :raises strongroom.errors.UsageError: it names no keyset strongroom defines.
    """
    if not _PURPOSE.fullmatch(purpose):
        raise UsageError(
            f"{purpose!r} is not a keyset purpose: expected {FILES!r}, {SIGNING!r}, 'store:<name>' "
            "or 'store:<name>:names'"
        )
    return purpose


def is_rotatable(purpose: str) -> bool:
    """Whether ``purpose`` may get new versions: every keyset but a store's names keyset."""
    return not purpose.endswith(_NAMES_SUFFIX)
