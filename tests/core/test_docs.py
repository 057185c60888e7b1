"""The docs keep up with the code: every hook, command and exit code is documented.

Code the docs mark ``<!-- tested by tests/core/test_docs.py: <label> -->``
is run here: the store example of ``docs/plugins.md`` is collected as a
``StoreContract`` subclass and held to the whole contract.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

import pytest

from strongroom import hookspecs
from strongroom.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def documented_code(page: str, label: str) -> str:
    """The Python blocks of ``docs/<page>`` marked with ``label``, each at its own line numbers."""
    lines = (DOCS / page).read_text().splitlines()
    marker = f"<!-- tested by tests/core/test_docs.py: {label} -->"
    code = [""] * len(lines)
    starts = [index + 2 for index, line in enumerate(lines) if line == marker]
    for start in starts:
        assert lines[start - 1] == "```python", f"{page}:{start}: no Python block after the marker"
        end = lines.index("```", start)
        code[start:end] = lines[start:end]
    assert starts, f"no {label!r} example in {page}"
    return "\n".join(code)


def run_documented_code(page: str, label: str) -> dict[str, Any]:
    """The namespace the marked blocks leave, run as one module whose tracebacks name the page."""
    namespace: dict[str, Any] = {"__name__": f"docs.{label.replace(' ', '_')}"}
    exec(compile(documented_code(page, label), str(DOCS / page), "exec"), namespace)  # noqa: S102
    return namespace


#: The store example of docs/plugins.md, held to the whole store contract.
TestDocumentedStoreExample = run_documented_code("plugins.md", "store example")["TestSqliteStore"]

HOOKS = sorted(
    name
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("strongroom_")
)


def test_hooks_are_found() -> None:
    assert len(HOOKS) >= 15


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_specified_typed_and_documented(hook: str) -> None:
    function = getattr(hookspecs, hook)
    assert function.__doc__, f"{hook} needs a docstring"
    annotated = set(function.__annotations__)
    assert annotated == {*inspect.signature(function).parameters, "return"}
    assert f"`{hook}(" in (DOCS / "plugins.md").read_text(), (
        f"{hook} is missing from docs/plugins.md"
    )


def test_every_command_and_exit_code_is_documented() -> None:
    cli_doc = (DOCS / "cli.md").read_text()
    subcommands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    for name in subcommands.choices:
        assert f"`{name}" in cli_doc, f"command {name} is missing from docs/cli.md"
    for code in (0, 1, 2, 3, 4, 130):
        assert f"| {code} |" in cli_doc


def test_readme_names_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m pip install nox && nox -s demo" in readme
    assert "python3 -m pip install nox && nox\n" in readme


def test_the_asgi_example_verifies_requests_and_signs_answers() -> None:
    """docs/server.md's Starlette app, driven in process with a signed request and a replay."""
    import asyncio

    import httpx

    from asgi_client import KEY, KEY_ID, Device
    from strongroom.signing.signer import check_response
    from strongroom.transport import SyncResponse

    example = run_documented_code("server.md", "asgi example")
    example["keys"].add(KEY_ID, KEY)
    device = Device()
    sent = device.sign("POST", "/v1/notes", b"hello", "op-1")
    again = device.sign("POST", "/v1/notes", b"hello", "op-1")

    async def drive() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=example["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            return [
                await client.post("/v1/notes", content=b"hello", headers=headers)
                for headers in (sent, again, sent)
            ]

    answer, retry, replayed = asyncio.run(drive())
    assert (answer.status_code, answer.json()) == (201, {"device": KEY_ID, "bytes": 5})
    response = SyncResponse(answer.status_code, answer.content, dict(answer.headers))
    assert check_response(KEY, KEY_ID, sent["Strongroom-Nonce"], response) is not None
    assert retry.headers["Idempotency-Replayed"] == "true"
    assert replayed.status_code == 401
    example["server"].close()
