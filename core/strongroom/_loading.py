"""Finding and loading backends and hook plugins through entry points.

Discovery reads package metadata only; nothing is imported until a backend
is asked for by name.  Every failure becomes a strongroom error that names
the entry-point group, the backend and, where one is declared, the extra to
install.  A plugin that raises on import is reported, never skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from strongroom.errors import (
    BackendBlocked,
    BackendNotFound,
    BackendUnavailable,
    PluginError,
    PluginLoadError,
)

#: Entry-point group for hook plugins (pluggy), as opposed to slot backends.
HOOK_PLUGIN_GROUP = "strongroom.plugins"


@dataclass(frozen=True)
class Slot:
    """A place in a stack that holds backends of one interface."""

    #: Table name in the config file.
    table: str
    group: str
    #: ``module:Class`` of the interface, imported only when a backend is checked.
    interface: str
    #: Whether the config holds several named instances (``[stores.<name>]``).
    plural: bool

    def interface_class(self) -> type:
        module, _, name = self.interface.partition(":")
        cls: type = getattr(import_module(module), name)
        return cls


SLOTS: tuple[Slot, ...] = (
    Slot("cipher_suite", "strongroom.cipher_suites", "strongroom.cipher_suite:CipherSuite", False),
    Slot("key_providers", "strongroom.key_providers", "strongroom.key_provider:KeyProvider", True),
    Slot("stores", "strongroom.stores", "strongroom.store:Store", True),
    Slot("transport", "strongroom.transports", "strongroom.transport:Transport", False),
)
SLOTS_BY_TABLE = {slot.table: slot for slot in SLOTS}


@dataclass(frozen=True)
class Registration:
    """One entry point, described from metadata alone."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    extras: tuple[str, ...]

    @classmethod
    def of(cls, entry_point: EntryPoint) -> Registration:
        dist = entry_point.dist
        return cls(
            group=entry_point.group,
            name=entry_point.name,
            target=f"{entry_point.module}:{entry_point.attr}"
            if entry_point.attr
            else entry_point.module,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            extras=tuple(entry_point.extras),
        )

    def install_hint(self) -> str:
        extras = ",".join(self.extras)
        return f"pip install '{self.distribution}[{extras}]'" if extras else ""


def registrations(group: str) -> list[Registration]:
    """Everything registered in ``group``, sorted by name; imports nothing."""
    return sorted(
        (Registration.of(ep) for ep in entry_points(group=group)),
        key=lambda reg: (reg.name, reg.distribution),
    )


def _matching(group: str, name: str) -> list[EntryPoint]:
    return [ep for ep in entry_points(group=group) if ep.name == name]


def _is_blocked(registration: Registration, blocked: Collection[str]) -> bool:
    return registration.distribution in blocked or registration.name in blocked


def load_backend(
    slot: Slot, name: str, *, blocked: Collection[str] = ()
) -> tuple[type, Registration]:
    """Import the backend class registered as ``name`` in ``slot``; return it and its origin.

    :raises BackendNotFound: nothing of that name is registered.
    :raises BackendBlocked: it comes from a plugin the config blocks.
    :raises BackendUnavailable: a module it needs is missing (names the extra).
    :raises PluginLoadError: importing it raised anything else.
    :raises PluginError: several distributions claim the name, or the object
        registered is not a ``slot.interface`` subclass.
    """
    from stevedore import DriverManager
    from stevedore.exception import MultipleMatches, NoMatches
    from stevedore.extension import ExtensionManager

    found = _matching(slot.group, name)
    if not found:
        available = ", ".join(reg.name for reg in registrations(slot.group)) or "none installed"
        raise BackendNotFound(
            f"no backend {name!r} in entry-point group {slot.group} (available: {available})"
        )
    registration = Registration.of(found[0])
    if any(_is_blocked(Registration.of(ep), blocked) for ep in found):
        raise BackendBlocked(
            f"backend {name!r} in {slot.group} comes from {registration.distribution}, "
            "which the config's [plugins] block list blocks"
        )

    def reraise(
        _manager: ExtensionManager[Any], _entry_point: EntryPoint, exc: BaseException
    ) -> None:
        raise exc

    try:
        manager: DriverManager[Any] = DriverManager(
            namespace=slot.group,
            name=name,
            invoke_on_load=False,
            on_load_failure_callback=reraise,
        )
    except MultipleMatches:
        owners = ", ".join(sorted(Registration.of(ep).distribution for ep in found))
        raise PluginError(
            f"backend {name!r} in {slot.group} is registered by several distributions: {owners}"
        ) from None
    except NoMatches:  # vanished between discovery and loading: an install raced us
        raise BackendNotFound(f"no backend {name!r} in entry-point group {slot.group}") from None
    except ModuleNotFoundError as exc:
        raise _unavailable(registration, exc) from exc
    except Exception as exc:
        raise PluginLoadError(
            f"backend {name!r} in {slot.group} ({registration.distribution}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    backend = manager.driver
    if not (isinstance(backend, type) and issubclass(backend, slot.interface_class())):
        raise PluginError(
            f"backend {name!r} in {slot.group} ({registration.target}) "
            f"is not a subclass of {slot.interface.replace(':', '.')}"
        )
    return backend, registration


def _unavailable(registration: Registration, exc: ModuleNotFoundError) -> BackendUnavailable:
    what = f"backend {registration.name!r} in {registration.group}"
    missing = f"module {exc.name!r} is not installed"
    if registration.extras:
        extras = ", ".join(repr(extra) for extra in registration.extras)
        return BackendUnavailable(
            f"{what} needs the {extras} extra ({missing}): {registration.install_hint()}"
        )
    return BackendUnavailable(f"{what} cannot be imported: {missing}")


@dataclass(frozen=True)
class HookPlugin:
    """A hook plugin found through entry points, and whether it was loaded."""

    registration: Registration
    plugin: object | None

    @property
    def blocked(self) -> bool:
        return self.plugin is None


def load_hook_plugins(*, blocked: Collection[str] = ()) -> Iterator[HookPlugin]:
    """Import every hook plugin not blocked, in name order.

    :raises PluginLoadError: a plugin raised while being imported.
    """
    for entry_point in sorted(entry_points(group=HOOK_PLUGIN_GROUP), key=lambda ep: ep.name):
        registration = Registration.of(entry_point)
        if _is_blocked(registration, blocked):
            yield HookPlugin(registration, None)
        else:
            yield HookPlugin(registration, _load_hook_entry_point(entry_point, registration))


def load_hook_plugin(name: str) -> object:
    """Import the hook plugin registered as ``name``.

    :raises PluginError: no hook plugin has that name.
    :raises PluginLoadError: it raised while being imported.
    """
    for entry_point in entry_points(group=HOOK_PLUGIN_GROUP, name=name):
        return _load_hook_entry_point(entry_point, Registration.of(entry_point))
    raise PluginError(f"no hook plugin {name!r} in entry-point group {HOOK_PLUGIN_GROUP}")


def _load_hook_entry_point(entry_point: EntryPoint, registration: Registration) -> object:
    try:
        return entry_point.load()
    except Exception as exc:
        raise PluginLoadError(
            f"hook plugin {registration.name!r} ({registration.distribution}) failed to "
            f"import: {type(exc).__name__}: {exc}"
        ) from exc
