"""Layering: first-party plugins and contrib use strongroom's public API only."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Modules a plugin author may import.  Everything else in strongroom is private.
PUBLIC_MODULES = {
    "strongroom",
    "strongroom.audit",
    "strongroom.backend",
    "strongroom.cipher_suite",
    "strongroom.config",
    "strongroom.durable",
    "strongroom.errors",
    "strongroom.formats",
    "strongroom.formats.chunked",
    "strongroom.formats.context",
    "strongroom.formats.manifest",
    "strongroom.formats.sealed",
    "strongroom.hookspecs",
    "strongroom.idempotency",
    "strongroom.key_provider",
    "strongroom.keys",
    "strongroom.nonce_cache",
    "strongroom.outbox",
    "strongroom.pinning",
    "strongroom.pins",
    "strongroom.redaction",
    "strongroom.secret",
    "strongroom.server_storage",
    "strongroom.settings",
    "strongroom.signing",
    "strongroom.signing.canonical",
    "strongroom.signing.headers",
    "strongroom.signing.keying",
    "strongroom.signing.signer",
    "strongroom.signing.verifier",
    "strongroom.store",
    "strongroom.sync",
    "strongroom.testing",
    "strongroom.transport",
}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def sources(root: str) -> list[Path]:
    return sorted((ROOT / root).rglob("*.py"))


@pytest.mark.parametrize(
    "root", ["plugins", "contrib", "tests/fixtures/sample_plugin/src", "tests/fixtures/examples"]
)
def test_extensions_import_only_the_public_api(root: str) -> None:
    files = sources(root)
    assert files, f"no sources under {root}"
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imports(path)
        if module.split(".")[0] == "strongroom" and module not in PUBLIC_MODULES
    ]
    assert offences == []


def test_core_does_not_depend_on_its_extensions() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources("core")
        for line, module in imports(path)
        if module.split(".")[0] in {"strongroom_plugins", "strongroom_contrib"}
    ]
    assert offences == []


def test_public_modules_exist_and_private_ones_are_marked() -> None:
    package = ROOT / "core" / "strongroom"
    for module in PUBLIC_MODULES - {"strongroom"}:
        relative = Path(*module.split(".")[1:])
        assert (package / f"{relative}.py").exists() or (
            package / relative / "__init__.py"
        ).exists()
    unlisted = {
        "strongroom." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.glob("*.py")
        if not path.name.startswith("_")
    }
    assert unlisted <= PUBLIC_MODULES, "a new top-level module must be private (_name) or public"
