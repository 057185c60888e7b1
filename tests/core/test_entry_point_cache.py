"""The entry-point cache: hit, every change that must miss, and every bad cache ignored.

Each test puts a private site directory (and the standard library) on
``sys.path``, installs fake distributions into it as files on disk, and
dates them back past :data:`~strongroom._entry_point_cache.SETTLE_NS` so
that they count as settled.  ``scan`` is wrapped to count how often the
cache had to fall back to ``importlib.metadata``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from strongroom import _entry_point_cache as cache
from strongroom._loading import SLOTS_BY_TABLE, load_backend, registrations
from strongroom.errors import BackendBlockedError, BackendUnavailableError, PluginError

SUITES = SLOTS_BY_TABLE["cipher_suite"]
GROUP = SUITES.group
#: Long enough ago for anything dated to it to count as settled.
LONG_AGO_NS = time.time_ns() - 3600 * 1_000_000_000


class Site:
    """A ``sys.path`` directory to install fake distributions into."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def install(
        self, name: str, entry_points: dict[str, str], *, version: str = "1.0", group: str = GROUP
    ) -> Path:
        info = self.path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = [f"[{group}]", *(f"{key} = {value}" for key, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        self.settle()
        return info

    def settle(self, when_ns: int = LONG_AGO_NS) -> None:
        """Date the directory and everything in it back to ``when_ns``."""
        for path in sorted(self.path.rglob("*"), reverse=True):
            os.utime(path, ns=(when_ns, when_ns))
        os.utime(self.path, ns=(when_ns, when_ns))
        # importlib.metadata keeps directory listings by mtime for the life of the
        # process (3.11's invalidate_caches() leaves them); a new process would not
        importlib.invalidate_caches()
        importlib.metadata.MetadataPathFinder().invalidate_caches()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A settled site directory first on a ``sys.path`` of its own, and a private cache home."""
    directory = tmp_path / "site"
    directory.mkdir()
    stdlib = [entry for entry in sys.path if entry.startswith(sys.base_prefix)]
    monkeypatch.setattr(sys, "path", [str(directory), *stdlib])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_memo", None)
    found = Site(directory)
    found.settle()
    return found


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per fall back to ``importlib.metadata``."""
    counted: list[int] = []
    real = cache.scan

    def scan() -> cache.Groups:
        counted.append(1)
        return real()

    monkeypatch.setattr(cache, "scan", scan)
    return counted


def cache_file(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "cache" / "strongroom").glob("entry-points-*.json")
    return found


def names(group: str = GROUP) -> list[str]:
    """The names in ``group``, sorted: distributions are found in directory order."""
    return sorted(entry[0] for entry in cache.entries(group))


def forget_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next lookup go to the file, as a new process would."""
    monkeypatch.setattr(cache, "_memo", None)


def test_a_warm_cache_answers_without_importlib_metadata(
    site: Site, scans: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot [fast]"}, version="2.1")
    assert cache.entries(GROUP) == [("rot", "rot_suite:Rot", "rot-plugin", "2.1", ("fast",))]
    assert scans == [1]
    path = cache_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert names() == ["rot"]  # from memory
    forget_memo(monkeypatch)
    assert names() == ["rot"]  # from the file
    assert scans == [1]


@pytest.mark.parametrize("mtime_put_back", [False, True])
def test_installing_removing_or_upgrading_a_plugin_misses(
    site: Site, scans: list[int], monkeypatch: pytest.MonkeyPatch, mtime_put_back: bool
) -> None:
    """Even when the site directory's mtime is put back, as a coarse clock could leave it."""
    site.install("first", {"one": "first_mod:One"})
    assert names() == ["one"]

    step = iter(range(1, 100))

    def changed() -> list[str]:
        site.settle(LONG_AGO_NS if mtime_put_back else LONG_AGO_NS + next(step) * 1000)
        forget_memo(monkeypatch)
        return names()

    second = site.install("second", {"two": "second_mod:Two"})
    assert changed() == ["one", "two"]
    # an upgrade: the old .dist-info goes, a new one with the new version comes
    for item in second.iterdir():
        item.unlink()
    second.rmdir()
    site.install("second", {"two": "second_mod:Two", "three": "second_mod:Three"}, version="2.0")
    assert changed() == ["one", "three", "two"]
    assert {entry[3] for entry in cache.entries(GROUP) if entry[2] == "second"} == {"2.0"}
    # an editable reinstall rewrites entry_points.txt in place
    (site.path / "first-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{GROUP}]\none = first_mod:One\nfour = first_mod:Four\n"
    )
    assert changed() == ["four", "one", "three", "two"]
    removed = site.path / "first-1.0.dist-info"
    for item in removed.iterdir():
        item.unlink()
    removed.rmdir()
    assert changed() == ["three", "two"]
    assert len(scans) == 5


def test_a_change_too_recent_to_trust_is_not_cached(
    site: Site, scans: list[int], tmp_path: Path
) -> None:
    site.install("fresh", {"new": "fresh_mod:New"})
    site.settle(time.time_ns())
    assert names() == ["new"]
    assert names() == ["new"]
    assert scans == [1, 1]
    assert not (tmp_path / "cache" / "strongroom").exists()


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": 1, "fingerprint": [], "groups": {}}',
        b'{"format": 999}',
    ],
)
def test_a_corrupt_or_foreign_format_cache_is_rebuilt(
    site: Site,
    scans: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: bytes,
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    names()
    path = cache_file(tmp_path)
    path.write_bytes(damage)
    forget_memo(monkeypatch)
    assert names() == ["rot"]
    assert scans == [1, 1]
    assert json.loads(path.read_bytes())["groups"][GROUP][0][0] == "rot"


def test_a_cache_naming_the_right_fingerprint_but_malformed_entries_is_ignored(
    site: Site, scans: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    names()
    path = cache_file(tmp_path)
    data = json.loads(path.read_bytes())
    data["groups"] = {GROUP: [["rot", "rot_suite:Rot", "rot-plugin", "1.0", "fast"]]}
    path.write_text(json.dumps(data))
    forget_memo(monkeypatch)
    assert cache.entries(GROUP)[0][4] == ()
    data["groups"] = {"other.group": []}
    path.write_text(json.dumps(data))
    forget_memo(monkeypatch)
    assert names() == ["rot"]
    assert scans == [1, 1, 1]


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_cache_others_could_write_is_ignored(
    site: Site,
    scans: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    names()
    path = cache_file(tmp_path)
    written = path.read_bytes()
    os.utime(path, ns=(LONG_AGO_NS, LONG_AGO_NS))
    target = path if what == "file" else path.parent
    for mode in (0o620, 0o602, 0o622) if what == "file" else (0o770, 0o707):
        target.chmod(mode)  # a loose file is replaced by a private one; a loose directory is left
        forget_memo(monkeypatch)
        assert names() == ["rot"]
    assert len(scans) == (4 if what == "file" else 3)
    assert path.read_bytes() == written
    if what == "directory":  # nothing is written into such a directory
        assert path.stat().st_mtime_ns == LONG_AGO_NS
    else:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_cache_owned_by_someone_else_is_ignored(
    site: Site, scans: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    names()
    forget_memo(monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    assert names() == ["rot"]
    assert scans == [1, 1]


def test_a_symlinked_cache_is_not_followed(
    site: Site, scans: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    names()
    path = cache_file(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    forget_memo(monkeypatch)
    assert names() == ["rot"]
    assert scans == [1, 1]
    assert not path.is_symlink()  # replaced by a file of its own


def test_a_cache_that_cannot_be_written_is_no_error(
    site: Site, scans: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only or missing home: here the cache's parent is a file (root ignores modes)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    site.install("rot-plugin", {"rot": "rot_suite:Rot"})
    assert names() == ["rot"]
    forget_memo(monkeypatch)
    assert names() == ["rot"]
    assert scans == [1, 1]


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", "/home/someone")
    assert cache.cache_dir() == "/home/someone/.cache/strongroom"


def test_only_strongroom_groups_are_served() -> None:
    with pytest.raises(ValueError, match="not a strongroom entry-point group"):
        cache.entries("console_scripts")


def test_a_warm_cache_still_refuses_duplicates_and_blocked_plugins(
    site: Site, scans: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("impostor", {"twin": "impostor_mod:Twin"})
    site.install("original", {"twin": "original_mod:Twin", "gone": "gone_mod:Gone"})
    names()
    forget_memo(monkeypatch)
    assert [(reg.name, reg.distribution) for reg in registrations(GROUP)] == [
        ("gone", "original"),
        ("twin", "impostor"),
        ("twin", "original"),
    ]
    with pytest.raises(PluginError, match="several distributions: impostor, original"):
        load_backend(SUITES, "twin")
    for blocked in ("original", "impostor", "twin"):
        with pytest.raises(BackendBlockedError, match="block list blocks"):
            load_backend(SUITES, "twin", blocked=[blocked])
    with pytest.raises(BackendBlockedError):
        load_backend(SUITES, "gone", blocked=["gone"])
    # a module that is not there (a stale cache could only ever name one) is reported
    with pytest.raises(BackendUnavailableError, match="gone_mod"):
        load_backend(SUITES, "gone")
    assert scans == [1]


def test_a_name_rewritten_in_place_or_an_upper_case_suffix_misses(
    site: Site, scans: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block list matches a distribution's name, so a name rewritten in place (the
    directory's mtime put back, the file's moved on) must not be answered from the cache;
    nor may metadata importlib finds under a suffix in another case."""
    info = site.install("good", {"shelf": "shelf_mod:Shelf"})
    assert [entry[2] for entry in cache.entries(GROUP)] == ["good"]
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    site.settle()
    os.utime(info / "METADATA", ns=(LONG_AGO_NS + 1000, LONG_AGO_NS + 1000))
    forget_memo(monkeypatch)
    assert [entry[2] for entry in cache.entries(GROUP)] == ["evil"]
    upper = site.path / "UP-1.0.DIST-INFO"
    upper.mkdir()
    (upper / "METADATA").write_text("Metadata-Version: 2.1\nName: up\nVersion: 1.0\n")
    (upper / "entry_points.txt").write_text(f"[{GROUP}]\nup = up_mod:Up\n")
    site.settle()
    forget_memo(monkeypatch)
    assert names() == ["shelf", "up"]
    (upper / "entry_points.txt").write_text(f"[{GROUP}]\nup = up_mod:Up\nmore = up_mod:More\n")
    site.settle(LONG_AGO_NS + 2000)
    forget_memo(monkeypatch)
    assert names() == ["more", "shelf", "up"]
    assert len(scans) == 4
