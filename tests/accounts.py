"""Accounts for tests: key hierarchies on the in-memory provider, and the default stack's config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strongroom.cipher_suite import CipherSuite
from strongroom.config import BUILTIN_SOURCE, DEFAULT_STACK, Config, parse_config
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


def default_stack_config(root: Path, passphrase: str | None = None) -> Config:
    """The default stack for account ``alice`` under ``root / "data"``, with cheap Argon2id.

    With ``passphrase``, the provider reads it from a private file of its own
    (a new file for each call, so several passphrases can be in play).
    """
    options: dict[str, Any] = {"memory_kib": 19456, "iterations": 2}
    if passphrase is not None:
        secret = root / f"passphrase-{len(list(root.glob('passphrase-*')))}"
        secret.write_text(passphrase)
        secret.chmod(0o600)
        options["passphrase"] = f"file:{secret}"
    providers = {
        name: {**table, **options} for name, table in DEFAULT_STACK["key_providers"].items()
    }
    data = {
        **DEFAULT_STACK,
        "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
        "key_providers": providers,
    }
    return parse_config(data, source=BUILTIN_SOURCE, environ={})
