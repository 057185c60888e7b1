"""A store written from the docs alone passes the whole store contract, scans and attacks too."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:  # the third-party store is not installed: import it from here
    sys.path.insert(0, str(FIXTURES))

from third_party.contract import SqliteStoreContract  # noqa: E402


class TestThirdPartySqliteStore(SqliteStoreContract):
    pass


ROOT = FIXTURES.parents[1]


def documented_modules() -> set[str]:
    """The strongroom modules ``docs/plugins.md`` names, in its API table or its text."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    modules = set(re.findall(r"`(strongroom(?:\.[a-z_]+)*)`", text))
    for row in re.findall(r"^\| (`strongroom[^|]*)\|", text, flags=re.MULTILINE):
        for name in re.findall(r"`([a-z_.]+)`", row):
            modules.add(name if name.startswith("strongroom") else f"strongroom.{name}")
    return modules


def strongroom_imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {module for module in found if module.split(".")[0] == "strongroom"}


def test_the_third_party_store_uses_only_what_the_docs_name() -> None:
    documented = documented_modules()
    assert {"strongroom", "strongroom.store", "strongroom.errors"} <= documented
    for path in sorted((FIXTURES / "third_party").glob("*.py")):
        assert strongroom_imports(path.read_text()) <= documented, path.name
