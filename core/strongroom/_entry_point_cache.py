"""strongroom's entry points, cached per environment: a command need not import importlib.metadata.

Importing ``importlib.metadata`` and reading every distribution's
``entry_points.txt`` costs several times what the rest of a command's start
does.  The ``strongroom.*`` groups are kept in
``$XDG_CACHE_HOME/strongroom/entry-points-<env>.json`` (default
``~/.cache``), under a fingerprint of the import path taken on every lookup:

- each ``sys.path`` entry and its ``mtime_ns`` (a distribution installed or
  removed adds or removes a directory entry, so its parent's mtime moves);
- for each ``*.dist-info`` / ``*.egg-info`` in a directory entry: its name
  (the version is part of it), its ``mtime_ns`` and the ``mtime_ns``, size
  and inode of its ``entry_points.txt`` (an in-place edit or an editable
  reinstall);
- the working directory, when an entry is relative (``""`` under ``python -c``);
- the finders on ``sys.meta_path`` that can list distributions.

A lookup whose fingerprint differs from the cached one scans through
``importlib.metadata`` exactly as an uncached lookup would and rewrites the
cache.  A fingerprint holding anything changed in the last
:data:`SETTLE_NS` is never cached (in memory or on disk): a second change
within the filesystem's timestamp granularity could otherwise leave the
same mtime behind.

The cache is advisory.  It is read only from a directory and file owned by
this user and writable by nobody else, opened without following symlinks;
a missing, unreadable, corrupt, foreign or loosely permitted cache is
ignored and rebuilt, and a cache that cannot be written (read-only home) is
skipped.  It only ever stands for what ``importlib.metadata`` would have
said: blocking, duplicate names and load errors are decided by the caller
on the same data either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from collections.abc import Iterator
    from importlib.metadata import EntryPoint

    #: ``(name, target, distribution, version, extras)``; target is ``module:attr`` or ``module``.
    Entry = tuple[str, str, str, str, tuple[str, ...]]
    Groups = dict[str, list[Entry]]

__all__ = ["GROUP_PREFIX", "SETTLE_NS", "cache_dir", "entries"]

#: Every entry-point group whose name starts with this is cached.
GROUP_PREFIX = "strongroom."
#: How long a fingerprinted mtime must lie in the past before it is trusted.
SETTLE_NS = 2_000_000_000
FORMAT = 1
#: A cache larger than this is not read.
MAX_SIZE = 1 << 20
#: The files of a distribution's metadata whose change changes what discovery answers:
#: its entry points, and its name and version (the block list matches the name).
_META_NAMES = ("entry_points.txt", "METADATA", "PKG-INFO")

_memo: tuple[list[object], Groups] | None = None


def entries(group: str) -> list[Entry]:
    """The entry points registered in ``group`` (which must start with :data:`GROUP_PREFIX`).

    In ``importlib.metadata``'s order: one distribution per name, the first
    on ``sys.path``, and its entry points in file order.
    """
    global _memo  # noqa: PLW0603 - keyed by the fingerprint: never stale, never reset
    if not group.startswith(GROUP_PREFIX):
        raise ValueError(f"{group!r} is not a strongroom entry-point group")
    fingerprint, settled = _fingerprint()
    if _memo is not None and _memo[0] == fingerprint:
        return list(_memo[1].get(group, ()))
    path = _cache_file()
    groups = _read(path, fingerprint) if path is not None else None
    if groups is None:
        groups = scan()
        if settled and path is not None:
            _write(path, fingerprint, groups)
    if settled:
        _memo = (fingerprint, groups)
    return list(groups.get(group, ()))


def scan() -> Groups:
    """Every ``strongroom.*`` entry point, read through ``importlib.metadata``."""
    from importlib.metadata import entry_points

    everything = entry_points()
    groups: Groups = {}
    for group in sorted(everything.groups):
        if group.startswith(GROUP_PREFIX):
            groups[group] = [_entry(ep) for ep in everything.select(group=group)]
    return groups


def _entry(ep: EntryPoint) -> Entry:
    dist = ep.dist
    return (
        ep.name,
        f"{ep.module}:{ep.attr}" if ep.attr else ep.module,
        dist.name if dist is not None else "?",
        dist.version if dist is not None else "?",
        tuple(ep.extras),
    )


# the fingerprint


def _fingerprint() -> tuple[list[object], bool]:
    """What the import path looks like now, and whether all of it is old enough to trust."""
    settle_before = time.time_ns() - SETTLE_NS
    newest = 0
    parts: list[object] = []
    path: list[object] = list(sys.path)  # importlib skips what is not a string: so does this
    for entry in path:
        if not isinstance(entry, str):
            parts.append(None)
            continue
        try:
            stamp = os.stat(entry or ".").st_mtime_ns
        except (OSError, ValueError):
            parts.append([entry, None])
            continue
        newest = max(newest, stamp)
        dists = []
        for name, stamps, mtimes in _distributions(entry or "."):
            newest = max([newest, *mtimes])
            dists.append([name, *stamps])
        parts.append([entry, stamp, dists])
    if any(isinstance(entry, str) and not os.path.isabs(entry) for entry in path):
        parts.append(os.getcwd())  # relative entries ("" for python -c) name another directory
    finders = [
        f"{type(finder).__module__}.{type(finder).__qualname__}"
        for finder in sys.meta_path
        if hasattr(finder, "find_distributions")
    ]
    parts.append(finders)
    return parts, newest < settle_before


def _distributions(directory: str) -> Iterator[tuple[str, list[int | None], list[int]]]:
    """Each distribution's metadata directory in ``directory``: name, stamps, and mtimes.

    Matched as ``importlib.metadata`` matches them, whatever the case of the
    suffix; an ``.egg`` directory keeps its metadata in ``EGG-INFO``.
    """
    try:
        with os.scandir(directory) as found:
            names = sorted(
                (item.name, item.path)
                for item in found
                if item.name.lower().endswith((".dist-info", ".egg-info", ".egg"))
            )
    except (OSError, ValueError):  # not a directory (a zip file, whose mtime covers it)
        return
    for name, path in names:
        meta_dir = os.path.join(path, "EGG-INFO") if name.lower().endswith(".egg") else path
        stamps: list[int | None] = []
        mtimes: list[int] = []
        for target in (path, meta_dir, *(os.path.join(meta_dir, meta) for meta in _META_NAMES)):
            try:
                info = os.stat(target)
            except OSError:
                stamps += [None, None, None]
                continue
            stamps += [info.st_mtime_ns, info.st_size, info.st_ino]
            mtimes.append(info.st_mtime_ns)
        yield name, stamps, mtimes


# the file


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/strongroom``, or ``~/.cache/strongroom`` (a relative $XDG_CACHE_HOME
    is ignored, as the XDG spec says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "strongroom")


def _cache_file() -> str | None:
    """This environment's cache file: one per interpreter prefix, so venvs do not evict
    each other; ``None`` where there is no home to keep it in."""
    directory = cache_dir()
    if not os.path.isabs(directory):
        return None
    env = zlib.crc32(f"{sys.prefix}\0{sys.executable}".encode("utf-8", "surrogateescape"))
    return os.path.join(directory, f"entry-points-{env:08x}.json")


def _trusted(info: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else."""
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _open_dir(directory: str) -> int:
    """A descriptor on ``directory`` if it is a trusted, real directory.

    :raises OSError: it is missing, a symlink, or not trusted.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not _trusted(os.fstat(fd)):
        os.close(fd)
        raise PermissionError(f"{directory}: not private to this user")
    return fd


def _read(path: str, fingerprint: list[object]) -> Groups | None:
    """The cached groups if the cache is trusted, well formed and for ``fingerprint``."""
    import stat

    directory, name = os.path.split(path)
    try:
        dir_fd = _open_dir(directory)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not (stat.S_ISREG(info.st_mode) and _trusted(info)) or info.st_size > MAX_SIZE:
                return None
            data = json.loads(handle.read(MAX_SIZE + 1))
    except (OSError, ValueError):  # missing, refused, corrupt (JSONDecodeError, bad UTF-8)
        return None
    if not (isinstance(data, dict) and data.get("format") == FORMAT):
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    return _groups(data.get("groups"))


def _groups(raw: object) -> Groups | None:
    """``raw`` as groups, or ``None`` unless every part has the expected type."""
    if not isinstance(raw, dict):
        return None
    groups: Groups = {}
    for group, items in raw.items():
        if not (isinstance(group, str) and group.startswith(GROUP_PREFIX)):
            return None
        if not isinstance(items, list):
            return None
        found: list[Entry] = []
        for item in items:
            if not (
                isinstance(item, list)
                and len(item) == 5
                and all(isinstance(text, str) for text in item[:4])
                and isinstance(item[4], list)
                and all(isinstance(extra, str) for extra in item[4])
            ):
                return None
            found.append((item[0], item[1], item[2], item[3], tuple(item[4])))
        groups[group] = found
    return groups


def _write(path: str, fingerprint: list[object], groups: Groups) -> None:
    """Replace the cache atomically (mode 0600 in a 0700 directory); never raises for I/O."""
    directory, name = os.path.split(path)
    data = json.dumps(
        {"format": FORMAT, "fingerprint": fingerprint, "groups": groups},
        separators=(",", ":"),
    ).encode()
    try:
        os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        dir_fd = _open_dir(directory)
    except OSError:  # read-only home, a foreign or loose directory: no cache
        return
    temp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
    except OSError:
        pass
    finally:
        os.close(dir_fd)
