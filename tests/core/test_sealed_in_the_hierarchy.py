"""The key hierarchy and sealed batches: subkeys live and die with the unlocked data key.

Records sealed through an unlocked ``DataKey`` share its batch; locking,
retiring or destroying the key drops its subkeys with it.  Data keys are
wrapped in keys.json as sealed version 2 objects, each in a batch of its
own, and a wrap written as version 1 still opens.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accounts import PURPOSES, make_keys
from strongroom.errors import AuthenticationError, KeyLockedError
from strongroom.formats import Context, open_sealed
from strongroom.keys import AccountKeys
from strongroom.keys._wrapping import open_data_key
from strongroom.secret import Secret
from strongroom.testing import MemoryKeyProvider

CONTEXT = Context(account="alice", store="notes", record="r")


@pytest.fixture
def keys(tmp_path: Path) -> AccountKeys:
    keys = make_keys(tmp_path / "alice", {"main": MemoryKeyProvider()}, [])
    keys.create()
    keys.ensure(*PURPOSES)
    return keys


def test_records_of_one_unlocked_key_share_a_batch_and_locking_drops_it(
    keys: AccountKeys,
) -> None:
    key = keys.data_key("store:notes")
    first, second = (key.subkeys.seal(b"value", CONTEXT) for _ in range(2))
    assert first[11:75] == second[11:75]
    assert open_sealed(second, lambda v: keys.data_key("store:notes", v).subkeys, CONTEXT)
    keys.lock()
    with pytest.raises(KeyLockedError):
        key.subkeys.seal(b"value", CONTEXT)  # the batch went with the lock
    keys.unlock()
    again = keys.data_key("store:notes")
    assert again is not key
    third = again.subkeys.seal(b"value", CONTEXT)
    assert third[11:43] != first[11:43]  # a new session starts a new batch
    lookup = keys.key_lookup("store:notes")  # (suite, key) tuples open them too
    assert open_sealed(first, lookup, CONTEXT) == open_sealed(third, lookup, CONTEXT) == b"value"


def test_retiring_a_version_drops_its_subkeys(keys: AccountKeys) -> None:
    old = keys.data_key("files")
    blob = old.subkeys.seal(b"value", CONTEXT)
    keys.rotate("files")
    keys.retire("files", old.version, force=True)
    with pytest.raises(KeyLockedError):
        old.subkeys.seal(b"value", CONTEXT)
    with pytest.raises(KeyLockedError):
        open_sealed(blob, lambda _v: old.subkeys, CONTEXT)


def record_of(keys: AccountKeys) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((keys.directory / "keys.json").read_text())
    return data


def test_data_keys_are_wrapped_as_version_2_each_with_its_own_salt(keys: AccountKeys) -> None:
    wrapped = [
        base64.b64decode(entry["wrapped"])
        for keyset in record_of(keys)["keysets"].values()
        for entry in keyset["versions"].values()
    ]
    assert len(wrapped) == len(PURPOSES)
    assert all(blob[:5] == b"SRsl\x02" for blob in wrapped)
    assert len({blob[11:43] for blob in wrapped}) == len(wrapped)


def seal_v1(master: bytes, material: bytes, context: Context) -> bytes:
    """A version 1 sealed object, as docs/formats.md specifies it (AES-256-GCM)."""
    salt = bytes(range(32))
    info = b"strongroom/v1/sealed/\x00\x01"
    okm = HKDF(hashes.SHA256(), 32 + 32 + 12, salt, info).derive(master)
    header = b"SRsl\x01\x00\x01" + (1).to_bytes(4, "big") + salt + okm[32:64]
    return header + AESGCM(okm[:32]).encrypt(okm[64:], material, header + context.encode())


def test_a_data_key_wrapped_as_version_1_still_opens() -> None:
    master = Secret(bytearray(range(100, 132)), label="master")
    material = bytes(range(32))
    wrapped = seal_v1(bytes(master.view()), material, Context("alice", "keys", "files#3"))
    opened = open_data_key(master, wrapped, account="alice", purpose="files", version=3)
    assert opened.export_raw(reason="compare in a test") == material
    with pytest.raises(AuthenticationError):
        open_data_key(master, wrapped, account="alice", purpose="files", version=4)
