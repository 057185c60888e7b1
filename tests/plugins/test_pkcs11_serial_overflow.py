"""A key under the account's label with the last serial cannot make rotation crash.

The next root's serial is the newest one plus one, packed as a u32: a key
planted (or left) with serial 2**32 - 1 must be refused with a strongroom
error (exit 4), not a ``struct.error`` (the CLI's "internal error").
"""

from __future__ import annotations

import pytest
from pkcs11 import Attribute, KeyType
from test_pkcs11_provider import CONTEXT, SECRET, hsm, label, make  # noqa: F401 - fixtures

from softhsm import SoftHsm
from strongroom.errors import KeyUnavailableError


def test_no_serial_past_the_last_one_is_made(hsm: SoftHsm, label: str) -> None:  # noqa: F811
    with make(hsm, label) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        with hsm.session() as session:
            session.generate_key(
                KeyType.AES,
                256,
                id=(2**32 - 1).to_bytes(4, "big") + bytes(8),
                label=label.format(account="alice"),
                store=True,
                template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
        with pytest.raises(KeyUnavailableError, match="serial"):
            provider.rewrap(SECRET, CONTEXT)
        assert provider.unwrap(blob, CONTEXT) == SECRET
