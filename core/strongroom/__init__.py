"""strongroom: pluggable security for offline-first applications.

The package root stays cheap to import (the CLI's cold start depends on it):
public names are resolved lazily on first access.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing would slow the CLI's cold start
__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy exports below, for type checkers
    from typing import Any

    from strongroom._process import harden_process
    from strongroom._stack import Strongroom
    from strongroom.cipher_suite import CipherSuite, KeyedAead
    from strongroom.config import Config, load_config
    from strongroom.hookspecs import hookimpl
    from strongroom.key_provider import KeyProvider, KeyProviderTraits
    from strongroom.settings import BackendSettings, NoSettings, SecretRef
    from strongroom.store import Store
    from strongroom.transport import SyncRequest, SyncResponse, Transport

_EXPORTS = {
    "BackendSettings": "strongroom.settings",
    "CipherSuite": "strongroom.cipher_suite",
    "Config": "strongroom.config",
    "KeyProvider": "strongroom.key_provider",
    "KeyProviderTraits": "strongroom.key_provider",
    "KeyedAead": "strongroom.cipher_suite",
    "NoSettings": "strongroom.settings",
    "SecretRef": "strongroom.settings",
    "Store": "strongroom.store",
    "Strongroom": "strongroom._stack",
    "SyncRequest": "strongroom.transport",
    "SyncResponse": "strongroom.transport",
    "Transport": "strongroom.transport",
    "harden_process": "strongroom._process",
    "hookimpl": "strongroom.hookspecs",
    "load_config": "strongroom.config",
}

__all__ = [  # kept in step with _EXPORTS by tests/core/test_exported_members.py
    "BackendSettings",
    "CipherSuite",
    "Config",
    "KeyProvider",
    "KeyProviderTraits",
    "KeyedAead",
    "NoSettings",
    "SecretRef",
    "Store",
    "Strongroom",
    "SyncRequest",
    "SyncResponse",
    "Transport",
    "__version__",
    "harden_process",
    "hookimpl",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'strongroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
