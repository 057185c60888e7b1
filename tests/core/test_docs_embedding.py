"""``docs/embedding.md`` runs: its Python blocks, in order, in one namespace and directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "embedding.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.M | re.S)


def test_the_embedding_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(GUIDE)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "embedding_guide"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{GUIDE.name}, block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the project's own documentation
    assert (tmp_path / "app-data" / "accounts" / "alice" / "keys.json").is_file()
