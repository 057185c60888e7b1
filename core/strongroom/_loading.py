"""Finding and loading backends and hook plugins through entry points.

Discovery reads package metadata only, through a cache
(:mod:`strongroom._entry_point_cache`) so that a command does not pay for
importing ``importlib.metadata``; nothing is imported until a backend is
asked for by name.  Loading imports the entry point's ``module:attr`` as
``EntryPoint.load()`` (and stevedore's ``DriverManager``) would.  Every
failure becomes a strongroom error that names the entry-point group, the
backend and, where one is declared, the extra to install.  A plugin that
raises on import is reported, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from strongroom import _entry_point_cache
from strongroom.errors import (
    BackendBlockedError,
    BackendNotFoundError,
    BackendUnavailableError,
    PluginError,
    PluginLoadError,
)

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

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
    # server side: which request nonces were seen (strongroom.signing.verifier)
    Slot("nonce_cache", "strongroom.nonce_caches", "strongroom.nonce_cache:NonceCache", False),
    # server side: the ciphertext a sync server keeps per account (strongroom.server_storage)
    Slot(
        "server_storage",
        "strongroom.server_stores",
        "strongroom.server_storage:ServerStorage",
        False,
    ),
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

    def load(self) -> object:
        """Import ``module`` and follow ``attr`` (dotted) as ``EntryPoint.load()`` does.

        :raises Exception: whatever importing the module raises.
        """
        module, _, attr = self.target.partition(":")
        found: object = import_module(module)
        for part in attr.split("."):
            if part:
                found = getattr(found, part)
        return found

    def install_hint(self) -> str:
        extras = ",".join(self.extras)
        return f"pip install '{self.distribution}[{extras}]'" if extras else ""


def _discovered(group: str) -> list[Registration]:
    """``group``'s entry points in discovery order (one distribution per name)."""
    return [Registration(group, *entry) for entry in _entry_point_cache.entries(group)]


def registrations(group: str) -> list[Registration]:
    """Everything registered in ``group``, sorted by name; imports nothing."""
    return sorted(_discovered(group), key=lambda reg: (reg.name, reg.distribution))


def _matching(group: str, name: str) -> list[Registration]:
    return [reg for reg in _discovered(group) if reg.name == name]


def _is_blocked(registration: Registration, blocked: Collection[str]) -> bool:
    return registration.distribution in blocked or registration.name in blocked


def load_backend(
    slot: Slot, name: str, *, blocked: Collection[str] = ()
) -> tuple[type, Registration]:
    """Import the backend class registered as ``name`` in ``slot``; return it and its origin.

    :raises BackendNotFoundError: nothing of that name is registered.
    :raises BackendBlockedError: it comes from a plugin the config blocks.
    :raises BackendUnavailableError: a module it needs is missing (names the extra).
    :raises PluginLoadError: importing it raised anything else.
    :raises PluginError: several distributions claim the name, or the object
        registered is not a ``slot.interface`` subclass.
    """
    found = _matching(slot.group, name)
    if not found:
        available = ", ".join(reg.name for reg in registrations(slot.group)) or "none installed"
        raise BackendNotFoundError(
            f"no backend {name!r} in entry-point group {slot.group} (available: {available})"
        )
    registration = found[0]
    if any(_is_blocked(reg, blocked) for reg in found):
        raise BackendBlockedError(
            f"backend {name!r} in {slot.group} comes from {registration.distribution}, "
            "which the config's [plugins] block list blocks"
        )
    if len(found) > 1:
        owners = ", ".join(sorted(reg.distribution for reg in found))
        raise PluginError(
            f"backend {name!r} in {slot.group} is registered by several distributions: {owners}"
        )
    try:
        backend = registration.load()
    except ModuleNotFoundError as exc:
        raise _unavailable(registration, exc) from exc
    except Exception as exc:
        raise PluginLoadError(
            f"backend {name!r} in {slot.group} ({registration.distribution}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    if not (isinstance(backend, type) and issubclass(backend, slot.interface_class())):
        raise PluginError(
            f"backend {name!r} in {slot.group} ({registration.target}) "
            f"is not a subclass of {slot.interface.replace(':', '.')}"
        )
    problems: list[str] = backend.declaration_problems()  # type: ignore[attr-defined]  # a Backend
    if problems:
        raise PluginError(
            f"backend {name!r} in {slot.group} ({registration.target}): {'; '.join(problems)}"
        )
    return backend, registration


def _unavailable(registration: Registration, exc: ModuleNotFoundError) -> BackendUnavailableError:
    what = f"backend {registration.name!r} in {registration.group}"
    missing = f"module {exc.name!r} is not installed"
    if registration.extras:
        extras = ", ".join(repr(extra) for extra in registration.extras)
        return BackendUnavailableError(
            f"{what} needs the {extras} extra ({missing}): {registration.install_hint()}"
        )
    return BackendUnavailableError(f"{what} cannot be imported: {missing}")


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
    for registration in sorted(_discovered(HOOK_PLUGIN_GROUP), key=lambda reg: reg.name):
        if _is_blocked(registration, blocked):
            yield HookPlugin(registration, None)
        else:
            yield HookPlugin(registration, _load_hook(registration))


def load_hook_plugin(name: str) -> object:
    """Import the hook plugin registered as ``name``.

    :raises PluginError: no hook plugin has that name.
    :raises PluginLoadError: it raised while being imported.
    """
    for registration in _matching(HOOK_PLUGIN_GROUP, name):
        return _load_hook(registration)
    raise PluginError(f"no hook plugin {name!r} in entry-point group {HOOK_PLUGIN_GROUP}")


def _load_hook(registration: Registration) -> object:
    try:
        return registration.load()
    except Exception as exc:
        raise PluginLoadError(
            f"hook plugin {registration.name!r} ({registration.distribution}) failed to "
            f"import: {type(exc).__name__}: {exc}"
        ) from exc
