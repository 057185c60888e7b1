"""``strongroom signing key --expose-key``: the request-signing key, to provision the server.

The server verifies a device's requests with the same HMAC key the device
derives from its ``signing`` keyset (``strongroom.signing.keying``), so the
key must reach it once per key version.  Printing it needs its flag, warns,
and is an audit event (``key.exposed``, naming the keyset, version and key
id, never the key).
"""

from __future__ import annotations

import base64
import sys
from typing import TYPE_CHECKING

from strongroom.audit import AuditEvent
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import UsageError
from strongroom.keys.purposes import SIGNING
from strongroom.signing.keying import derive_mac_key, wire_key_id

if TYPE_CHECKING:
    import argparse


def key(args: argparse.Namespace) -> int:
    """Print the key id and base64 MAC key of the primary (or a given) signing key version."""
    if not args.expose_key:
        raise UsageError(
            "this prints the key that signs this device's requests: whoever sees it can "
            "sign requests as this device; add --expose-key to confirm"
        )
    with opened(args) as stack:
        signing = stack.config.signing
        if signing is None:
            raise UsageError("no [signing] table is configured: requests are not signed")
        data_key = stack.keys.data_key(SIGNING, args.key_version)
        mac = derive_mac_key(data_key.material.view(), stack.config.account, data_key.version)
        key_id = wire_key_id(signing.key_id, data_key.version)
        details = {"purpose": SIGNING, "version": str(data_key.version), "key_id": key_id}
        stack._audit(AuditEvent("key.exposed", stack.config.account, details=details))
    encoded = base64.b64encode(mac).decode()
    data = {"key_id": key_id, "key": encoded, "key_version": data_key.version}
    emit(args, data, [f"key id: {key_id}", f"key:    {encoded}"])
    print(
        f"strongroom: warning: the request-signing key {key_id} is exposed: give it to the "
        "sync server only. To replace it: strongroom keys rotate --purpose signing, "
        "provision the new key id, then retire the old one on the server",
        file=sys.stderr,
    )
    return 0
