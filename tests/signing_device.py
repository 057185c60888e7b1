"""A device that signs its requests: a stack with ``[signing]`` and a pinned https transport.

``signing_device(directory, url, ca_bundle, pins)`` builds and initialises it
(a fast passphrase), and ``provision(stack, ring)`` gives the server's
``KeyRing`` the device's MAC key, as ``strongroom signing key`` would print it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from strongroom import Strongroom, load_config
from strongroom.keys.purposes import SIGNING
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.verifier import KeyRing

PASSPHRASE = "signing device passphrase 3f1e"  # noqa: S105 - the tests' own
KEY_ID = "phone-1"


@contextlib.contextmanager
def signing_device(
    directory: Path,
    url: str,
    ca_bundle: Path,
    pins: Sequence[str] = (),
    *,
    account: str = "alice",
    transport: str = "",
) -> Iterator[Strongroom]:
    """An initialised stack of ``account`` that signs as ``phone-1`` and sends to ``url``.

    ``transport`` adds settings to the ``[transport]`` table (TOML lines).
    """
    config = directory / "strongroom.toml"
    pinned = ""
    if pins:
        host = url.removeprefix("https://").rpartition(":")[0]
        listed = ", ".join(f'"{pin}"' for pin in pins)
        pinned = f'[transport.pins."{host}"]\npins = [{listed}]\n'
    config.write_text(
        f'[strongroom]\ndata_dir = "{directory / "data"}"\naccount = "{account}"\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        '[stores.notes]\nuse = "files"\n'
        f'[transport]\nuse = "https"\nurl = "{url}"\nca_bundle = "{ca_bundle}"\n{transport}'
        f'{pinned}[signing]\nkey_id = "{KEY_ID}"\n'
    )
    with Strongroom(load_config(config, environ={}), secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
        yield stack


def provision(stack: Strongroom, ring: KeyRing) -> None:
    """Give ``ring`` the device's MAC key under its wire key id (``phone-1.v1``)."""
    data_key = stack.keys.data_key(SIGNING)
    account = stack.config.account
    ring.add(f"{KEY_ID}.v1", derive_mac_key(data_key.material.view(), account, 1))
