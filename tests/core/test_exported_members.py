"""The package root's public names: sorted, resolvable, and lazily loaded."""

from __future__ import annotations

import subprocess
import sys

import strongroom


def test_all_is_sorted_and_matches_the_lazy_exports() -> None:
    assert strongroom.__all__ == sorted(strongroom.__all__)
    assert set(strongroom.__all__) == {*strongroom._EXPORTS, "__version__"}


def test_every_exported_name_resolves() -> None:
    for name in strongroom.__all__:
        assert getattr(strongroom, name) is not None
    assert dir(strongroom) == strongroom.__all__


def test_importing_the_root_loads_no_framework_module() -> None:
    probe = "import sys, strongroom; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert [name for name in loaded if name.startswith("strongroom.")] == []
    heavy = {"typing", "msgspec", "pydantic", "pluggy", "stevedore", "cryptography"}
    assert not heavy & set(loaded)
