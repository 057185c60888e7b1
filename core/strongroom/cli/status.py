"""``strongroom status``: the stack, key versions, lock state and providers; never a secret.

It validates the config as ``config check`` does (every backend resolved,
every setting checked) and fails the same way, exit 2: a status that
reports a stack which cannot run would mislead.  When an unlock agent holds
this config's account, the agent gathers the status (it has the stack open)
and this module only prints it, so it imports nothing of the framework at
the top.
"""

from __future__ import annotations

from strongroom.cli._output import emit

TYPE_CHECKING = False  # typing is not imported at run time: the agent's client prints this
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from typing import Any

    from strongroom._stack import Strongroom


def run(args: argparse.Namespace) -> int:
    from strongroom.cli._session import opened

    with opened(args, unlock=False) as stack:
        data = collect(stack, _agent_holding(str(stack.config.account_dir)))
    show(args, data)
    return 0


def _agent_holding(directory: str) -> dict[str, Any] | None:
    """The state of an agent holding this account for another config (its own would have
    answered this command itself), marked ``other_config``; None when none runs.
    """
    import os

    from strongroom.agent.client import agents

    wanted = os.path.realpath(directory)
    for _path, state in agents():
        if state.get("unlocked") and os.path.realpath(str(state.get("directory"))) == wanted:
            return {**state, "other_config": True}
    return None


def show(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """Print what :func:`collect` gathered (here, or in the agent)."""
    emit(args, data, _text(data))


def collect(stack: Strongroom, agent: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status of ``stack``; ``agent`` is the state of the agent holding it unlocked."""
    import dataclasses

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
        # every CLI command starts locked and unlocks only to act, unless an agent holds it
        "locked": not (agent and agent["unlocked"]),
        "agent": agent,
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
    return data


def _state_line(data: dict[str, Any]) -> str:
    if data["locked"]:
        return "state:        locked (commands unlock only while they run)"
    agent = data["agent"]
    other = ", which serves another config," if agent.get("other_config") else ""
    return f"state:        unlocked by agent {agent['pid']}{other} ('strongroom lock' ends it)"


def _text(data: dict[str, Any]) -> Iterator[str]:
    yield f"config:       {data['config']}"
    yield f"account:      {data['account']} ({data['directory']})"
    if not data["initialised"]:
        yield "state:        not initialised; run 'strongroom init'"
    else:
        yield _state_line(data)
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
