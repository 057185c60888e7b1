"""Accounts for key-hierarchy tests: the shared in-memory provider and a builder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strongroom.cipher_suite import CipherSuite
from strongroom.keys import AccountKeys
from strongroom.testing import MemoryKeyProvider
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm
from strongroom_plugins.ciphers.chacha import ChaCha20Poly1305

SUITES: dict[str, CipherSuite] = {
    "aes-256-gcm": Aes256Gcm(),
    "chacha20-poly1305": ChaCha20Poly1305(),
}


#: Every keyset the tests use, created as ``strongroom init`` would.
PURPOSES = ("files", "signing", "store:notes", "store:notes:names")


def make_keys(
    directory: Path,
    providers: Mapping[str, MemoryKeyProvider],
    events: list[tuple[str, dict[str, Any]]] | None = None,
    **options: Any,
) -> AccountKeys:
    return AccountKeys(
        account="alice",
        directory=directory,
        providers=providers,
        provider_backends=dict.fromkeys(providers, "test"),
        suite_for=SUITES.__getitem__,
        default_suite=options.pop("default_suite", "aes-256-gcm"),
        notify=lambda hook, **kwargs: (events if events is not None else []).append((hook, kwargs)),
        **options,
    )
