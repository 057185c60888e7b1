"""``Strongroom``: a stack built from a config, owning its plugins and backends."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from strongroom._loading import SLOTS_BY_TABLE, load_backend, load_hook_plugins
from strongroom.audit import AuditEvent
from strongroom.backend import Backend, Closeable
from strongroom.config import Config
from strongroom.errors import KeyLockedError, PluginError, UsageError

# Only what building a stack and unlocking it need is imported here: the key
# hierarchy, stores, formats and pluggy's machinery are imported where first
# used, so a command that cannot unlock stops before paying for them.
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    import pluggy

    from strongroom._loading import HookPlugin, Registration
    from strongroom.cipher_suite import CipherSuite
    from strongroom.config import BackendChoice
    from strongroom.key_provider import KeyProvider, SecretRequest, SecretSource
    from strongroom.keys import AccountKeys
    from strongroom.keys._policy import KeyPolicy
    from strongroom.nonce_cache import NonceCache
    from strongroom.secret import Secret
    from strongroom.server_storage import ServerStorage
    from strongroom.settings import BackendSettings
    from strongroom.store import Store, StoreBinding
    from strongroom.transport import SyncRequest, SyncResponse, Transport, TransportBinding

__all__ = ["ResolvedBackend", "Strongroom"]


#: The key-lifecycle hooks each of which is also an audit event, and its action.
_LIFECYCLE_ACTIONS = {
    "strongroom_key_unlocked": "key.unlocked",
    "strongroom_key_locked": "key.locked",
    "strongroom_key_rotated": "key.rotated",
    "strongroom_key_retired": "key.retired",
    "strongroom_key_destroyed": "key.destroyed",
    "strongroom_account_wiped": "account.wiped",
}


def _run_each(steps: Iterable[Callable[[], object]]) -> list[Exception]:
    """Run every step even when one raises; return what they raised."""
    errors = []
    for step in steps:
        try:
            step()
        except Exception as exc:
            errors.append(exc)
    return errors


#: Set to any non-empty value to load no hook plugins from entry points.
DISABLE_AUTOLOAD_ENV = "STRONGROOM_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class ResolvedBackend:
    """A configured backend, imported and with its settings validated."""

    choice: BackendChoice
    backend: type[Backend]
    settings: BackendSettings
    registration: Registration


class Strongroom(Closeable):
    """One configured stack.

    Building it registers hook plugins (entry points under
    ``strongroom.plugins`` unless autoload is off, plus any passed in) on a
    plugin manager of its own, and fires ``strongroom_configure``.  Backends
    are imported lazily, only those the config names.

    The plugin manager (and pluggy) is built on first need: when a plugin is
    registered, or :attr:`plugin_manager` or :attr:`hook` is used.  Until
    then no plugin can be listening, so the stack's own events are not fired
    at all; from then on every event reaches every registered plugin.
    """

    def __init__(
        self,
        config: Config,
        *,
        plugins: Iterable[object] = (),
        secrets: Mapping[str, SecretSource | Secret | str | bytes] | None = None,
    ) -> None:
        """Register the hook plugins and fire ``strongroom_configure``.

        ``secrets`` hands providers their user's secret in process, by the
        provider's config name (``key_providers.<name>``): a
        :data:`~strongroom.key_provider.SecretSource` that asks in the
        application's own UI, or the secret itself (a
        :class:`~strongroom.secret.Secret`, text or bytes), which then
        answers every request but a change of secret.  Nothing goes through
        the environment, a file or a command line.

        :raises strongroom.errors.PluginLoadError: an autoloaded hook plugin failed to import.
        :raises strongroom.errors.PluginError: a plugin's redaction pattern does not compile.
        :raises strongroom.errors.UsageError: ``secrets`` names a provider the
            config does not have.
        """
        import threading

        self.config = config
        self._secrets = {name: _as_source(secret) for name, secret in (secrets or {}).items()}
        unknown = set(self._secrets) - set(config.instances("key_providers"))
        if unknown:
            raise UsageError(f"secrets given for unconfigured key providers: {sorted(unknown)}")
        self._plugin_manager: pluggy.PluginManager | None = None
        self._plugin_manager_guard = threading.Lock()
        self.hook_plugins: list[HookPlugin] = []
        if config.autoload and not os.environ.get(DISABLE_AUTOLOAD_ENV):
            for found in load_hook_plugins(blocked=config.blocked):
                self.hook_plugins.append(found)
                if found.plugin is not None:
                    self.plugin_manager.register(found.plugin, name=found.registration.name)
        for plugin in plugins:
            self.plugin_manager.register(plugin)
        if self._listened_to:  # only a plugin can name what to mask
            self._mask_what_plugins_name()
        self._resolved: dict[str, ResolvedBackend] = {}
        self._instances: dict[str, Backend] = {}
        self._suites: dict[str, CipherSuite] = {}
        self._keys: AccountKeys | None = None
        self._closed = False
        #: Stores purged of what is past their retention in this stack (see :meth:`store`).
        self._purged: set[str] = set()
        for choice in config.backends:  # fail closed: a retention no store can keep
            if choice.retention is not None:
                self.resolve(choice.table)
        self._notify("strongroom_configure", strongroom=self)

    def _mask_what_plugins_name(self) -> None:
        import re

        from strongroom.redaction import add_patterns

        answers = self.hook.strongroom_redaction_patterns()
        try:
            add_patterns(pattern for answer in answers for pattern in answer or ())
        except re.error as exc:
            raise PluginError(f"a redaction pattern is not a regular expression: {exc}") from None

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """This stack's own pluggy plugin manager, with strongroom's hook specifications."""
        with self._plugin_manager_guard:
            if self._plugin_manager is None:
                import pluggy

                from strongroom import hookspecs

                manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
                manager.add_hookspecs(hookspecs)
                if self.config.signing is not None:  # built in: no block list drops it
                    from strongroom.signing.signer import RequestSigner

                    signer = RequestSigner(
                        self.config.signing, account=self.config.account, keys=lambda: self.keys
                    )
                    manager.register(signer, name="strongroom.signing")
                self._plugin_manager = manager
            return self._plugin_manager

    @property
    def hook(self) -> pluggy.HookRelay:
        """Call hooks as ``strongroom.hook.strongroom_<name>(...)``."""
        return self.plugin_manager.hook

    def resolve(self, table: str) -> ResolvedBackend:
        """Import the backend configured for ``table`` and validate its settings.

        :raises strongroom.errors.ConfigError: no such table, or invalid settings.
        :raises strongroom.errors.PluginError: the backend cannot be loaded.
        """
        if table not in self._resolved:
            choice = self.config.choice(table)
            slot = SLOTS_BY_TABLE[choice.slot]
            backend, registration = load_backend(slot, choice.use, blocked=self.config.blocked)
            assert issubclass(backend, Backend)  # noqa: S101 - load_backend checked the interface
            settings = choice.validate(backend.Settings)
            if choice.retention is not None:
                from strongroom._retention import RETENTION_KEY, require_support

                where = choice.origins.get(RETENTION_KEY, self.config.source)
                store = cast("type[Store]", backend)
                require_support(store, use=choice.use, source=where, table=table)
            self._resolved[table] = ResolvedBackend(choice, backend, settings, registration)
        return self._resolved[table]

    def resolve_all(self) -> list[ResolvedBackend]:
        """Resolve every configured backend, in slot order; see :meth:`resolve`."""
        return [self.resolve(choice.table) for choice in self.config.backends]

    def _instance(self, table: str) -> Backend:
        if self._closed:
            raise RuntimeError("this Strongroom is closed")
        if table not in self._instances:
            resolved = self.resolve(table)
            if resolved.choice.slot == "stores":  # load_backend checked it is a Store
                store = cast("type[Store]", resolved.backend)
                self._instances[table] = store(
                    resolved.settings, binding=self._store_binding(table.partition(".")[2])
                )
            elif resolved.choice.slot == "transport":  # load_backend checked it is a Transport
                transport = cast("type[Transport]", resolved.backend)
                self._instances[table] = transport(
                    resolved.settings, binding=self._transport_binding()
                )
            else:
                self._instances[table] = resolved.backend(resolved.settings)
        return self._instances[table]

    def _transport_binding(self) -> TransportBinding:
        """Pin failures fire ``strongroom_pin_failure``; a failing listener is only logged."""
        from strongroom.transport import TransportBinding

        def pin_failure(host: str, presented: Sequence[str], expected: Sequence[str]) -> None:
            if self._listened_to:
                arguments: dict[str, object] = {
                    "host": host,
                    "presented": list(presented),
                    "expected": list(expected),
                }
                self._tell_each("strongroom_pin_failure", arguments)

        return TransportBinding(self.config.account, pin_failure=pin_failure, audit=self._audit)

    def _store_binding(self, name: str) -> StoreBinding:
        from strongroom.durable import make_private_dir
        from strongroom.store import StoreBinding

        directory = self.config.account_dir / "stores" / name
        make_private_dir(directory)
        return StoreBinding(self.config.account, name, directory, self.keys, audit=self._audit)

    def suite(self, name: str) -> CipherSuite:
        """A cipher suite by name: the configured one, or another that old data names.

        :raises strongroom.errors.PluginError: no such suite can be loaded.
        """
        if name == self.config.choice("cipher_suite").use:
            return self.cipher_suite
        if name not in self._suites:
            backend, _ = load_backend(
                SLOTS_BY_TABLE["cipher_suite"], name, blocked=self.config.blocked
            )
            self._suites[name] = cast("CipherSuite", backend())
        return self._suites[name]

    @property
    def keys(self) -> AccountKeys:
        """The configured account's key hierarchy, with every configured provider."""
        if self._keys is None:
            from strongroom.keys import AccountKeys

            names = self.config.instances("key_providers")
            self._keys = AccountKeys(
                account=self.config.account,
                directory=self.config.account_dir,
                providers={name: self.key_provider(name) for name in names},
                provider_backends={
                    name: self.config.choice(f"key_providers.{name}").use for name in names
                },
                suite_for=self.suite,
                default_suite=self.config.choice("cipher_suite").use,
                notify=self._notify,
                idle_timeout=self.config.idle_timeout or None,
                count_objects=self._count_objects,
                policy=self._key_policy(),
                presence=self._ask_presence,
                dropped=self._stores_drop_keys,
            )
        return self._keys

    def _key_policy(self) -> KeyPolicy:
        """The config's ``policy`` and ``idle_timeout`` settings, by provider and keyset."""
        from strongroom.keys._policy import PRESENCE, KeyPolicy
        from strongroom.keys.purposes import names_purpose, store_purpose

        providers = self.config.instances("key_providers")
        stores = {
            name: self.config.choice(f"stores.{name}") for name in self.config.instances("stores")
        }
        return KeyPolicy(
            presence_providers=frozenset(
                name
                for name in providers
                if self.config.choice(f"key_providers.{name}").policy == PRESENCE
            ),
            # A store's names keyset (files: the record names) is its key as much as its data's.
            presence_purposes=frozenset(
                purpose
                for name, choice in stores.items()
                if choice.policy == PRESENCE
                for purpose in (store_purpose(name), names_purpose(name))
            ),
            idle_timeouts={
                purpose: choice.idle_timeout
                for name, choice in stores.items()
                if choice.idle_timeout is not None
                for purpose in (store_purpose(name), names_purpose(name))
            },
        )

    def _ask_presence(self, account: str, reason: str) -> bool | None:
        """The first ``strongroom_request_user_presence`` answer; a plugin that raises declines."""
        try:
            answer = self.hook.strongroom_request_user_presence(account=account, reason=reason)
        except Exception as exc:
            import logging

            logging.getLogger(__name__).warning(
                "the user-presence plugin failed (%s): presence declined", type(exc).__name__
            )
            return False
        return answer if isinstance(answer, bool) else None

    def _stores_drop_keys(self, purpose: str | None = None) -> None:
        """Tell each store built (encrypting with ``purpose``, or all) that its keys are gone."""
        for table, instance in list(self._instances.items()):
            if table.startswith("stores.") and (
                purpose is None or purpose in cast("Store", instance).key_purposes
            ):
                cast("Store", instance).forget_keys()

    def background(self, *stores: str) -> contextlib.AbstractContextManager[None]:
        """Run work with no user present, keeping the session open for ``stores`` only.

        Within the block (in this context: this thread, and work it hands on
        with its context, as ``asyncio.to_thread`` and sync's chunk workers
        do) no user presence is asked: a store whose policy is ``presence`` is
        refused, even if its key is cached.
        The session does not idle out, nor do the named stores' keys; every
        other store's own ``idle_timeout`` still runs::

            with stack.background("cache"):
                sync_cache(stack.store("cache"))

        :raises strongroom.errors.UsageError: a named store's policy needs
            presence, or no such store is configured.
        """
        configured = self.config.instances("stores")
        unknown = [name for name in stores if name not in configured]
        if unknown:
            raise UsageError(f"no store {unknown[0]!r} is configured")
        from strongroom.keys.purposes import names_purpose, store_purpose

        return self.keys.background(
            purpose for name in stores for purpose in (store_purpose(name), names_purpose(name))
        )

    def initialise(self) -> list[str]:
        """Create the account's keys and the keysets of every configured store.

        On an account that exists already, unlock it and create only the
        keysets of stores added to the config since.  This (with ``strongroom
        init``) is the one place keysets are made: none is made on first use.
        Returns the keysets created.

        :raises strongroom.errors.KeyUnavailableError: a provider cannot wrap or unwrap.
        """
        from strongroom.keys.purposes import FILES

        purposes = [
            purpose
            for name in self.config.instances("stores")
            for purpose in self.store(name).key_purposes
        ]
        if self.config.signing is not None:
            from strongroom.keys.purposes import SIGNING

            purposes.append(SIGNING)
        if self.keys.exists():
            self.keys.unlock()
        else:
            self.keys.create()
        return self.keys.ensure(*purposes, FILES)

    def _count_objects(self, purpose: str, version: int) -> int | None:
        """How many objects the configured stores hold under ``purpose`` #``version``.

        ``None`` when nobody can tell: the ``files`` keyset encrypts files
        kept anywhere, a store may not count, or no configured store uses
        the keyset any more.
        """
        opened = [self._store(name) for name in self.config.instances("stores")]
        stores = [store for store in opened if purpose in store.key_purposes]
        if not stores:
            return None
        try:
            return sum(store.versions_in_use().get(version, 0) for store in stores)
        except NotImplementedError:
            return None

    def wipe(self) -> list[str]:
        """Destroy the account: wrapped keys and provider roots first, then its data.

        Needs no unlock and cannot be blocked by a corrupt or edited key
        record: it destroys whatever it can reach.  Returns one line for each
        thing it could not do (see :meth:`strongroom.keys.AccountKeys.destroy_all`,
        and files the data directory kept), never raising for them.
        """
        import contextlib
        import shutil

        from strongroom.durable import fsync_dir

        stores = [self._instances.pop(t) for t in list(self._instances) if t.startswith("stores.")]
        left = [
            f"a store failed to close ({type(exc).__name__})"
            for exc in _run_each(store.close for store in stores)
        ]
        left += self.keys.destroy_all()
        directory = self.config.account_dir
        if directory.exists():

            def note(_function: Callable[..., object], path: str, exc: object) -> None:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                left.append(f"{path}: could not remove ({reason})")

            shutil.rmtree(directory, onerror=lambda f, p, info: note(f, p, info[1]))
            with contextlib.suppress(OSError):
                fsync_dir(directory.parent)
        self._notify("strongroom_account_wiped", account=self.config.account)
        return left

    def _notify(self, hook: str, **kwargs: object) -> None:
        """Fire ``hook``; a key-lifecycle hook is also an audit event (:mod:`strongroom.audit`).

        Without a plugin manager nothing is registered to hear either.
        """
        if hook == "strongroom_key_locked":
            self._stores_drop_keys()
        if not self._listened_to:
            return
        if hook == "strongroom_configure":  # a plugin that cannot configure stops the build
            getattr(self.hook, hook)(**kwargs)
            return
        self._tell_each(hook, kwargs)
        action = _LIFECYCLE_ACTIONS.get(hook)
        if action is not None:
            account = str(kwargs.pop("account"))
            details = {name: str(value) for name, value in kwargs.items()}
            self._audit(AuditEvent(action, account, details=details))

    def _audit(self, event: AuditEvent) -> None:
        if self._listened_to:
            self._tell_each("strongroom_audit_event", {"event": event})

    def _tell_each(self, hook: str, kwargs: dict[str, object]) -> None:
        """Call every plugin's ``hook`` on its own: one that raises is logged, never propagated.

        The key hierarchy fires these while it locks and wipes; a broken
        listener must not stop keys being wiped, nor silence the others.
        """
        import logging

        for impl in getattr(self.hook, hook).get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:
                logging.getLogger(__name__).warning(
                    "hook plugin %r failed on %s (%s)", impl.plugin_name, hook, type(exc).__name__
                )

    @property
    def _listened_to(self) -> bool:
        """Whether a plugin manager exists, and so whether any plugin can hear an event."""
        return self._plugin_manager is not None

    @property
    def cipher_suite(self) -> CipherSuite:
        """The configured cipher suite, built on first use."""
        return cast("CipherSuite", self._instance("cipher_suite"))

    def key_provider(self, name: str) -> KeyProvider:
        """The provider configured as ``[key_providers.<name>]``, built on first use.

        :raises strongroom.errors.UsageError: it was handed a secret it cannot take.
        """
        table = f"key_providers.{name}"
        fresh = table not in self._instances
        provider = cast("KeyProvider", self._instance(table))
        if fresh and name in self._secrets:
            try:
                provider.use_secret(self._secrets[name])
            except BaseException:  # never left built, on its own sources, for the next call
                del self._instances[table]
                provider.close()
                raise
        return provider

    def store(self, name: str) -> Store:
        """The store configured as ``[stores.<name>]``.

        One with a ``retention`` is first purged of what is past it, once
        per stack; while its key is locked that waits for the next call
        (nothing it holds can be read meanwhile).
        """
        store = self._store(name)
        if name not in self._purged and self.resolve(f"stores.{name}").choice.retention:
            import contextlib

            from strongroom.errors import KeyUnavailableError

            with contextlib.suppress(KeyUnavailableError):
                self.purge_expired(name)
        return store

    def _store(self, name: str) -> Store:
        """The store, not purged: counting runs under the key hierarchy's guard."""
        return cast("Store", self._instance(f"stores.{name}"))

    def open_database(self, name: str) -> Any:
        """A new DB-API connection to store ``name``'s encrypted database; the caller closes it.

        For the application's own tables (``docs/databases.md``): strongroom
        keys it, the application never sees the key.

        :raises strongroom.errors.UsageError: the store keeps no database (``files``).
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        store = self.store(name)
        connect = getattr(store, "connect", None)
        if not callable(connect):
            backend = self.resolve(f"stores.{name}").choice.use
            raise UsageError(
                f"store {name!r} ({backend}) keeps no database to open; "
                'use a database store such as use = "sqlcipher"'
            )
        return connect()

    def purge_expired(self, name: str) -> int:
        """Delete what store ``name`` holds past its retention; return how many went.

        :raises strongroom.errors.UsageError: the store has no retention.
        :raises strongroom.errors.StoreError: the medium refused the change.
        """
        from strongroom._retention import purge

        retention = self.resolve(f"stores.{name}").choice.retention
        if retention is None:
            raise UsageError(f"store {name!r} has no retention; set retention in [stores.{name}]")
        count = purge(self._store(name), retention)
        self._purged.add(name)
        return count

    @property
    def transport(self) -> Transport:
        """The configured transport, built on first use."""
        return cast("Transport", self._instance("transport"))

    def send(self, request: SyncRequest) -> SyncResponse:
        """Send ``request`` through the transport, signed by the hook plugins, and check the answer.

        With ``[signing]`` configured the built-in signer signs it (the
        account must be unlocked) and checks the response's signature; a
        request nothing signed is never sent.  After a signed refusal of its
        timestamp, the signer corrects its clock and the request is signed
        and sent once more.

        :raises strongroom.errors.IntegrityError: the response failed its check.
        :raises strongroom.errors.RequestRefusedError: the server refused the signature.
        :raises strongroom.errors.TransportError: the transport failed.
        :raises strongroom.errors.KeyLockedError: signing needs the unlocked account.
        """
        from strongroom._send import send

        return send(self, request)

    @property
    def nonce_cache(self) -> NonceCache:
        """The configured ``[nonce_cache]`` (a server's), built on first use."""
        return cast("NonceCache", self._instance("nonce_cache"))

    @property
    def server_storage(self) -> ServerStorage:
        """The configured ``[server_storage]`` (a sync server's), built on first use."""
        return cast("ServerStorage", self._instance("server_storage"))

    def close(self) -> None:
        """Close every backend built, wipe the keys, then tell plugins; idempotent.

        Every step runs even when an earlier one raises; the first error is
        raised at the end.
        """
        if self._closed:
            return
        self._closed = True
        instances = list(reversed(self._instances.values()))
        self._instances.clear()
        steps: list[Callable[[], object]] = [instance.close for instance in instances]
        if self._keys is not None:
            steps.append(self._keys.close)
        steps.append(lambda: self._notify("strongroom_unconfigure", strongroom=self))
        errors = _run_each(steps)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<Strongroom account={self.config.account!r} config={self.config.source!r}>"


def _as_source(secret: SecretSource | Secret | str | bytes) -> SecretSource:
    """A secret source; the secret itself answers every request but a change of secret."""
    from strongroom.secret import Secret

    if callable(secret):
        return secret
    if not isinstance(secret, (str, bytes, Secret)):
        raise UsageError(
            f"a provider's secret is text, bytes, a Secret or a callable, "
            f"not {type(secret).__name__}"
        )

    def given(request: SecretRequest) -> str | bytes | Secret:
        if request.change:
            raise KeyLockedError(
                f"no new secret was given for {request.context.account!r}; pass a source that "
                "answers change requests to change it"
            )
        return secret

    return given
