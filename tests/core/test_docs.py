"""The docs keep up with the code: every hook, command and exit code is documented."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from strongroom import hookspecs
from strongroom.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

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
