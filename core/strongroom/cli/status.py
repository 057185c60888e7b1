"""``strongroom status``: the stack, key versions, lock state and providers; never a secret.

It validates the config as ``config check`` does (every backend resolved,
every setting checked) and fails the same way, exit 2: a status that
reports a stack which cannot run would mislead.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from typing import Any

from strongroom.cli._output import emit
from strongroom.cli._session import opened


def run(args: argparse.Namespace) -> int:
    with opened(args, unlock=False) as stack:
        stack.resolve_all()  # every backend importable and its settings valid, as config check
        config = stack.config
        exists = stack.keys.exists()
        status = stack.keys.status() if exists else None
        providers = {}
        for name in config.instances("key_providers"):
            traits = stack.key_provider(name).traits
            providers[name] = {
                "use": config.choice(f"key_providers.{name}").use,
                "wraps_master": bool(status and name in status.providers),
                **dataclasses.asdict(traits),
            }
    data: dict[str, Any] = {
        "config": config.source,
        "account": config.account,
        "directory": str(config.account_dir),
        "initialised": exists,
        "locked": True,  # every CLI command starts locked and unlocks only to act
        "cipher_suite": config.choice("cipher_suite").use,
        "stores": {
            name: config.choice(f"stores.{name}").use for name in config.instances("stores")
        },
        "providers": providers,
        "master_version": status.master_version if status else None,
        "keysets": [
            {
                "purpose": keyset.purpose,
                "primary": keyset.primary,
                "versions": [
                    {"version": number, "suite": suite, "state": str(state), "master": master}
                    for number, (suite, state, master) in keyset.versions.items()
                ],
            }
            for keyset in (status.keysets if status else [])
        ],
    }
    emit(args, data, _text(data))
    return 0


def _text(data: dict[str, Any]) -> Iterator[str]:
    yield f"config:       {data['config']}"
    yield f"account:      {data['account']} ({data['directory']})"
    if not data["initialised"]:
        yield "state:        not initialised; run 'strongroom init'"
    else:
        yield "state:        locked (commands unlock only while they run)"
        yield f"master key:   version {data['master_version']}"
    yield f"cipher suite: {data['cipher_suite']}"
    stores = ", ".join(f"{name} ({use})" for name, use in data["stores"].items())
    yield f"stores:       {stores or 'none'}"
    yield "providers:"
    for name, info in data["providers"].items():
        wraps = "wraps the master key" if info["wraps_master"] else "not in use"
        flags = [
            flag.replace("_", " ")
            for flag in ("non_exportable_root", "needs_user_presence", "survives_reinstall")
            if info[flag]
        ]
        yield f"  {name} ({info['use']}): {wraps}; {', '.join(flags) or 'no special traits'}"
    if data["keysets"]:
        yield "keysets:"
    for keyset in data["keysets"]:
        versions = ", ".join(
            f"v{v['version']} {v['state']}"
            + (" (primary)" if v["version"] == keyset["primary"] else "")
            for v in keyset["versions"]
        )
        yield f"  {keyset['purpose']}: {versions}"
