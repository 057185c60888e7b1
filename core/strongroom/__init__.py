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
    from strongroom.audit import AuditEvent
    from strongroom.cipher_suite import CipherSuite, KeyedAead
    from strongroom.config import Config, load_config, parse_config
    from strongroom.hookspecs import hookimpl
    from strongroom.key_provider import (
        KeyProvider,
        KeyProviderTraits,
        SecretRequest,
        SecretSource,
        WrapContext,
    )
    from strongroom.keys import AccountKeys, KeyState
    from strongroom.secret import Secret
    from strongroom.settings import BackendSettings, NoSettings, SecretRef
    from strongroom.store import ReencryptProgress, Store, StoreBinding

#: The public API, resolved on first access.  ``strongroom.errors``,
#: ``strongroom.formats``, ``strongroom.testing`` and ``strongroom.redaction``
#: are public modules, as is ``strongroom.transport``; any module or name
#: starting with ``_`` is private.
_EXPORTS = {
    "AccountKeys": "strongroom.keys",
    "AuditEvent": "strongroom.audit",
    "BackendSettings": "strongroom.settings",
    "CipherSuite": "strongroom.cipher_suite",
    "Config": "strongroom.config",
    "KeyProvider": "strongroom.key_provider",
    "KeyProviderTraits": "strongroom.key_provider",
    "KeyState": "strongroom.keys",
    "KeyedAead": "strongroom.cipher_suite",
    "NoSettings": "strongroom.settings",
    "ReencryptProgress": "strongroom.store",
    "Secret": "strongroom.secret",
    "SecretRef": "strongroom.settings",
    "SecretRequest": "strongroom.key_provider",
    "SecretSource": "strongroom.key_provider",
    "Store": "strongroom.store",
    "StoreBinding": "strongroom.store",
    "Strongroom": "strongroom._stack",
    "WrapContext": "strongroom.key_provider",
    "harden_process": "strongroom._process",
    "hookimpl": "strongroom.hookspecs",
    "load_config": "strongroom.config",
    "parse_config": "strongroom.config",
}

__all__ = [  # kept in step with _EXPORTS by tests/core/test_exported_members.py
    "AccountKeys",
    "AuditEvent",
    "BackendSettings",
    "CipherSuite",
    "Config",
    "KeyProvider",
    "KeyProviderTraits",
    "KeyState",
    "KeyedAead",
    "NoSettings",
    "ReencryptProgress",
    "Secret",
    "SecretRef",
    "SecretRequest",
    "SecretSource",
    "Store",
    "StoreBinding",
    "Strongroom",
    "WrapContext",
    "__version__",
    "harden_process",
    "hookimpl",
    "load_config",
    "parse_config",
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
