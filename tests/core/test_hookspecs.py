"""Every hook is documented where ``help`` looks, and either fired by shipped code or marked."""

from __future__ import annotations

import inspect
import pydoc
import re
from pathlib import Path

import pytest

from strongroom import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [name for name in dir(hookspecs) if name.startswith("strongroom_")]
SHIPPED = [
    path
    for tree in ("core", "plugins", "contrib")
    for path in (ROOT / tree).rglob("*.py")
    if path.name != "hookspecs.py"
]


def test_help_shows_every_hook() -> None:
    text = pydoc.render_doc(hookspecs, renderer=pydoc.plaintext)
    assert HOOKS
    for name in HOOKS:
        assert f"{name}(" in text


@pytest.mark.parametrize("name", HOOKS)
def test_a_hook_is_fired_by_shipped_code_or_says_it_is_not_yet(name: str) -> None:
    fired = re.compile(rf"""\.{name}\(|["']{name}["']""")
    firing = [path for path in SHIPPED if fired.search(path.read_text())]
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    if "Not fired yet" in doc:
        assert not firing, f"{name} fires in {firing}: drop 'Not fired yet' from its docstring"
    else:
        assert firing, f"nothing fires {name}: fire it, or say 'Not fired yet' and by what"
