"""``strongroom config check``: validate the config and show the resolved stack.

Every configured backend is imported and its settings validated, so a
passing check means the stack will build.  Secret settings are shown as the
references the config holds (``env:NAME``), never resolved.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from strongroom._stack import ResolvedBackend, Strongroom
from strongroom.cli._output import emit
from strongroom.config import Config, load_config


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with Strongroom(config) as stack:
        resolved = stack.resolve_all()
        hook_plugins = [
            {"name": found.registration.name, "blocked": found.blocked}
            for found in stack.hook_plugins
        ]
    data = describe(config, resolved, hook_plugins)
    emit(args, data, _text(data))
    return 0


def describe(
    config: Config, resolved: list[ResolvedBackend], hook_plugins: list[dict[str, Any]]
) -> dict[str, Any]:
    """The resolved stack as plain data, for text or JSON output."""
    return {
        "source": config.source,
        "account": config.account,
        "data_dir": str(config.data_dir),
        "plugins": {
            "autoload": config.autoload,
            "blocked": sorted(config.blocked),
            "hook_plugins": hook_plugins,
        },
        "backends": [
            {
                "table": item.choice.table,
                "use": item.choice.use,
                "distribution": f"{item.registration.distribution} {item.registration.version}",
                "settings": item.settings.to_table(),
            }
            for item in resolved
        ],
    }


def _text(data: dict[str, Any]) -> Iterator[str]:
    plugins = data["plugins"]
    hooks = ", ".join(
        f"{hook['name']}{' (blocked)' if hook['blocked'] else ''}"
        for hook in plugins["hook_plugins"]
    )
    yield f"config:   {data['source']}"
    yield f"account:  {data['account']}"
    yield f"data dir: {data['data_dir']}"
    yield f"plugins:  autoload {'on' if plugins['autoload'] else 'off'}; " + (
        f"blocked: {', '.join(plugins['blocked'])}" if plugins["blocked"] else "nothing blocked"
    )
    yield f"hooks:    {hooks or 'none'}"
    for backend in data["backends"]:
        yield f"[{backend['table']}] {backend['use']}  ({backend['distribution']})"
        for key, value in sorted(backend["settings"].items()):
            yield f"    {key} = {value!r}"
    yield "ok: the stack is valid"
