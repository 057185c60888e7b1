"""Shared fixtures: real distributions written on disk for entry-point tests, and gnome-keyring."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services import GnomeKeyring, running_gnome_keyring

MakeDistribution = Callable[..., Path]


@pytest.fixture
def make_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeDistribution]:
    """Install a tiny distribution into a fresh sys.path entry.

    ``make_distribution(name, entry_points={group: {ep_name: target}}, modules={name: source})``
    writes a real ``.dist-info`` that importlib.metadata (and so the entry-point
    cache and the CLI in a subprocess, through ``PYTHONPATH``) discovers like any
    installed plugin.  Returns the sys.path entry.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    created_modules: list[str] = []

    def make(
        name: str,
        *,
        version: str = "1.0",
        entry_points: dict[str, dict[str, str]] | None = None,
        modules: dict[str, str] | None = None,
    ) -> Path:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, names in (entry_points or {}).items():
            lines.append(f"[{group}]")
            lines.extend(f"{ep_name} = {target}" for ep_name, target in names.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            created_modules.append(module)
        importlib.invalidate_caches()
        return site

    yield make
    for module in created_modules:
        sys.modules.pop(module, None)


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry-point cache of this test session, not the user's ``~/.cache``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def gnome_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[GnomeKeyring]:
    """A private gnome-keyring on its own D-Bus session, for this test only."""
    with running_gnome_keyring(monkeypatch) as service:
        yield service
