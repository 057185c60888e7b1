"""An account's key record and its unlocked session: reading, authenticating, unlocking.

The base of the key hierarchy's classes: :class:`~strongroom.keys._data_keys.DataKeyAccess`
adds the data keys encryption asks for, and
:class:`~strongroom.keys.hierarchy.AccountKeys` everything that administers
the hierarchy (creation, rotation, retirement, destruction, providers, wipe).

Nothing in the record is used before it is authenticated: unlocking checks
its MAC (and, where a provider keeps one, that it is not older than the
newest generation written), and every later read of a changed record is
checked again.  When another process has rotated the master key meanwhile,
the session unwraps the new one through its providers before going on, so
a key is only ever sealed under the master version of the record it is
written into.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.audit import AuditEvent
from strongroom.backend import Closeable
from strongroom.durable import locked, make_private_dir
from strongroom.errors import (
    AuthenticationError,
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    ProviderKeyLostError,
    SecretSourceError,
    StrongroomError,
    UnlockFailedError,
    UsageError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.keys._policy import KeyPolicy, PresenceCheck
from strongroom.keys._record import (
    RECORD_FILE,
    KeyRecord,
    ProviderWrap,
    check_mac,
    load_record,
    save_record,
)
from strongroom.keys._session import Session
from strongroom.keys.purposes import MASTER
from strongroom.secret import Secret

if TYPE_CHECKING:
    from strongroom.keys._wrapping import SuiteResolver

__all__ = ["KEY_SIZE", "LOCK_FILE", "KeyAccess", "ObjectCounter"]

log = logging.getLogger(__name__)

KEY_SIZE = 32
LOCK_FILE = ".keys.lock"

#: ``(purpose, version) -> objects still under it``, or ``None`` if they cannot be counted.
ObjectCounter = Callable[[str, int], int | None]


class KeyAccess(Closeable):
    """One account's key record and unlocked session; see ``AccountKeys``."""

    def __init__(
        self,
        *,
        account: str,
        directory: Path,
        providers: Mapping[str, KeyProvider],
        provider_backends: Mapping[str, str],
        suite_for: SuiteResolver,
        default_suite: str,
        notify: Callable[..., Any] = lambda _hook, **_kwargs: None,
        idle_timeout: float | None = None,
        count_objects: ObjectCounter = lambda _purpose, _version: None,
        policy: KeyPolicy | None = None,
        presence: PresenceCheck = lambda _account, _reason: None,
        dropped: Callable[[str], None] = lambda _purpose: None,
    ) -> None:
        self.account = account
        self.directory = directory
        self._record_path = os.fspath(directory / RECORD_FILE)
        self._providers = dict(providers)
        self._provider_backends = dict(provider_backends)
        self._unlocked_by = ""
        self._suite_for = suite_for
        self._default_suite = default_suite
        self._notify = notify
        self._count_objects = count_objects
        self._guard = threading.RLock()
        self._policy = policy if policy is not None else KeyPolicy()
        self._presence = presence
        #: Whether this context runs background work (:meth:`background`), which has no user:
        #: a context, not a thread, so work a background block hands to other threads with
        #: its context (``contextvars.copy_context``, ``asyncio.to_thread``) stays background.
        self._background: ContextVar[bool] = ContextVar("strongroom_background", default=False)
        self._session = Session(
            account,
            idle_timeout,
            self._guard,
            self._session_event,
            purpose_timeouts=self._policy.idle_timeouts,
            dropped=dropped,
        )
        self._cached: tuple[tuple[int, int, int], KeyRecord] | None = None
        self._verified: KeyRecord | None = None
        #: The highest generation this object has authenticated: the record never goes back.
        self._newest = 0
        #: How many times this object has saved the record (see :attr:`changes`).
        self._saves = 0

    def asks_presence(self, purpose: str) -> bool:
        """Whether each use of ``purpose``'s keys goes through the presence policy."""
        return purpose in self._policy.presence_purposes

    @property
    def changes(self) -> int:
        """A number that rises whenever this object saves the record or stops a key's use.

        Two attribute reads: a store that checks its key version only now
        and then compares it to notice at once a lock, an idle timeout, or a
        retirement made in this process.
        """
        return self._saves + self._session.drops

    # state on disk

    def exists(self) -> bool:
        """Whether the account has a key record."""
        return (self.directory / RECORD_FILE).exists()

    def _read(self) -> KeyRecord:
        """The record as on disk, not yet authenticated; re-parsed only when replaced.

        Do not mutate it.  Only reports (``status``) use it unauthenticated.
        """
        try:
            info = os.stat(self._record_path)  # a string: every key use comes through here
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
            record = load_record(self.directory)
        except FileNotFoundError:
            raise KeyUnavailableError(
                f"account {self.account!r} has no keys in {self.directory}; run 'strongroom init'"
            ) from None
        except NotADirectoryError:
            raise KeyUnavailableError(
                f"{self.directory} is not a directory: account {self.account!r} has no keys there"
            ) from None
        if record.account != self.account:
            raise IntegrityError(
                f"{self._record_path}: the key record belongs to another account, "
                f"not {self.account!r}"
            )
        self._cached = (stamp, record)
        return record

    def _current(self) -> KeyRecord:
        """The record, authenticated under the session's master key.  Do not mutate it.

        :raises strongroom.errors.KeyLockedError: the account is locked, or the
            master key was rotated elsewhere and cannot be unwrapped again.
        :raises strongroom.errors.IntegrityError: the record was altered.
        """
        with self._guard:
            record = self._read()
            self._authenticate(record)
            return record

    def _authenticate(self, record: KeyRecord) -> None:
        master = self._session.master_key()  # raises if locked
        if record.master_version != self._session.master_version:
            self._reunlock(record)  # another process rotated the master key
        elif self._verified is not record:
            check_mac(record, master, self.directory)
            self._verified = record
        self._check_not_older(record)

    def _check_not_older(self, record: KeyRecord) -> None:
        """Refuse a record older than one this object has already trusted.

        An authentic record put back while a session is open (or between two
        unlocks of the same object) would bring destroyed keys back; it is
        caught here without asking any provider.
        """
        if record.generation < self._newest:
            raise IntegrityError(
                f"{self.directory / RECORD_FILE}: the key record went back from generation "
                f"{self._newest} to {record.generation}: it was rolled back or restored; "
                "put the newest keys.json back"
            )
        self._newest = record.generation

    def _reunlock(self, record: KeyRecord) -> None:
        try:
            name, master = self._unwrap_master(record, None, prefer=self._unlocked_by)
        except KeyUnavailableError as exc:
            self.lock(reason="master key rotated")
            raise KeyLockedError(
                f"account {self.account!r}: the master key was rotated by another process "
                f"and could not be unwrapped again ({exc}); unlock again"
            ) from exc
        try:
            check_mac(record, master, self.directory)
            self._check_generation(record)
        except IntegrityError:
            master.wipe()
            raise
        self._session.start(master, record.master_version)
        self._verified = record
        self._unlocked_by = name

    @contextlib.contextmanager
    def _changing(self) -> Iterator[KeyRecord]:
        """Read-modify-write the authenticated record under an exclusive lock.

        Written, MACed under the session's master key, only if the block
        succeeds; then each provider that keeps one is told the new generation.
        """
        make_private_dir(self.directory)
        with self._guard, locked(self.directory / LOCK_FILE):
            record = self._current().model_copy(deep=True)
            yield record
            save_record(self.directory, record, self._session.master_key())
            self._saves += 1
            self._newest = record.generation
            self._record_generation(record.generation)

    def _record_generation(self, generation: int) -> None:
        """Tell every configured provider the record was saved, and its new generation.

        The generation is best effort: the record is already saved, and a
        provider that cannot keep the value now keeps an older one, which
        weakens rollback protection until the next write but loses nothing.
        """
        for name, provider in self._providers.items():
            provider.saved(self.account)
            try:
                provider.record_generation(self.account, generation)
            except StrongroomError as exc:
                log.warning(
                    "provider %r could not keep key record generation %d: %s", name, generation, exc
                )

    # locking

    @contextlib.contextmanager
    def holding_secrets(self) -> Iterator[None]:
        """Within this, each provider asks its user once (see ``KeyProvider.holding_secrets``).

        What a provider read is wiped when the block ends.
        """
        with contextlib.ExitStack() as held:
            for provider in self._providers.values():
                held.enter_context(provider.holding_secrets())
            yield

    @property
    def unlocked(self) -> bool:
        return self._session.unlocked

    def unlock(self, provider: str | None = None) -> str:
        """Unwrap the master key through ``provider``, or the first that works.

        The record is then authenticated before anything in it is used, and
        refused if a provider keeps a newer generation than it has.  Returns
        the config name of the provider that unlocked it.

        :raises strongroom.errors.KeyUnavailableError: no provider could
            unwrap it; the message says what each one answered.
        :raises strongroom.errors.IntegrityError: the record was altered, or
            is older than a provider's kept generation (rolled back).
        """
        return self._unlock(provider, check_rollback=True)

    def _unlock(self, provider: str | None, *, check_rollback: bool) -> str:
        try:
            return self._unlock_once(provider, check_rollback=check_rollback)
        except Exception as exc:
            details = {"error": type(exc).__name__}
            if isinstance(exc, StrongroomError):  # its messages never hold a secret; others may
                details["reason"] = str(exc)
            event = AuditEvent("key.unlock", self.account, "failure", details)
            self._notify("strongroom_audit_event", event=event)
            raise

    def _unlock_once(self, provider: str | None, *, check_rollback: bool) -> str:
        with self._guard:
            record = self._read()
            if self._session.unlocked and self._session.master_version == record.master_version:
                self._authenticate(record)
                return self._unlocked_by
            name, master = self._unwrap_master(record, provider)
            try:
                check_mac(record, master, self.directory)
                if check_rollback:
                    self._check_generation(record)
                    self._check_not_older(record)
            except BaseException:
                master.wipe()
                raise
            self._session.start(master, record.master_version)
            self._verified = record
            self._newest = record.generation
            self._unlocked_by = name
        self._notify("strongroom_key_unlocked", account=self.account, provider=name)
        return name

    def _kept_generations(self) -> dict[str, int]:
        """The generation each configured provider keeps, where one does and answers."""
        kept: dict[str, int] = {}
        for name, provider in self._providers.items():
            try:
                generation = provider.recorded_generation(self.account)
            except KeyUnavailableError as exc:
                log.info("provider %r could not report its generation: %s", name, exc)
                continue
            if generation is not None:
                kept[name] = generation
        return kept

    def _check_generation(self, record: KeyRecord) -> None:
        for name, kept in self._kept_generations().items():
            if kept > record.generation:
                raise IntegrityError(
                    f"{self.directory / RECORD_FILE}: the key record is older than provider "
                    f"{name!r} last saw (generation {record.generation} < {kept}): it was "
                    "rolled back or restored from a backup, which could bring destroyed keys "
                    "back; put the newest keys.json back, or run 'strongroom keys "
                    "accept-rollback' to keep this one"
                )

    def _unwrap_master(
        self, record: KeyRecord, provider: str | None, *, prefer: str = ""
    ) -> tuple[str, Secret]:
        """The master key of ``record`` from ``provider``, or the first provider that works."""
        if provider and provider not in record.wraps:
            raise UsageError(f"provider {provider!r} does not wrap account {self.account!r}")
        # A recovery-only provider (a recovery key on paper) is tried when named, never in turn.
        names = [
            n
            for n in self._providers
            if n in record.wraps and not self._providers[n].traits.recovery_only
        ]
        candidates = [provider] if provider else sorted(names, key=lambda n: n != prefer)
        failures: list[tuple[str, StrongroomError]] = []
        for name in candidates:
            try:
                if name in self._policy.presence_providers:
                    self._require_presence(f"unlocking through provider {name!r}")
                material = self._provider(name).unwrap(
                    record.wraps[name].blob,
                    WrapContext(self.account, MASTER, record.master_version),
                )
            except (KeyUnavailableError, IntegrityError, SecretSourceError) as exc:
                failures.append((name, exc))  # any one provider unlocks: try the next
                continue
            label = f"{self.account} master key v{record.master_version}"
            return name, Secret(bytearray(material), label=label)
        if not failures:
            raise KeyUnavailableError(
                f"account {self.account!r}: none of its providers is configured "
                f"(it is wrapped by: {', '.join(record.wraps)})"
            )
        error = failures[0][1] if len(failures) == 1 else _combined(self.account, failures)
        lost = [name for name, exc in failures if isinstance(exc, ProviderKeyLostError)]
        recovery = [n for n in record.wraps if n in self._providers and n not in names]
        if lost and recovery:
            raise type(error)(
                f"{error}; to re-enrol {lost[0]!r}, run 'strongroom recover --with "
                f"{recovery[0]} --enrol {lost[0]}' with the recovery key"
            ) from None
        raise error

    # user presence and background work

    def _require_presence(self, reason: str) -> None:
        """Ask the user to confirm presence for ``reason``; raise unless they do.

        :raises strongroom.errors.UnlockFailedError: the user declined.
        :raises strongroom.errors.KeyLockedError: this is background work, or
            nothing could ask (no presence plugin answered, no terminal).
        """
        background = self._background.get()
        answer = False if background else self._presence(self.account, reason)
        outcome = "ok" if answer is True else "failure"
        said = "present" if answer is True else "declined" if answer is False else "none"
        details = {"reason": reason, "answer": said}
        event = AuditEvent("presence.checked", self.account, outcome, details)
        self._notify("strongroom_audit_event", event=event)
        if answer is True:
            return
        if background:
            raise KeyLockedError(f"{reason} needs user presence, which background work cannot give")
        if answer is False:
            raise UnlockFailedError(f"user presence was declined ({reason})")
        raise KeyLockedError(
            f"{reason} needs user presence, and nothing could ask for it "
            "(no presence plugin answered, and there is no terminal)"
        )

    def master_wrap(self, provider: str) -> tuple[bytes, WrapContext]:
        """The master key's wrap for ``provider`` and its context, as the record on disk holds them.

        For a presence check that proves the user knows a provider's secret
        by opening this wrap with a probe of its own.  The wrap is no secret
        (``keys.json`` holds it); while the account is unlocked it comes from
        the authenticated record, so a wrap swapped on disk for one under a
        passphrase someone else knows proves nothing.  Before unlocking (a
        ``presence`` provider) it cannot be authenticated.

        :raises strongroom.errors.UsageError: ``provider`` does not wrap the account.
        :raises strongroom.errors.IntegrityError: the record was altered.
        """
        with self._guard:
            record = self._current() if self._session.unlocked else self._read()
        if provider not in record.wraps:
            raise UsageError(f"provider {provider!r} does not wrap account {self.account!r}")
        return record.wraps[provider].blob, WrapContext(self.account, MASTER, record.master_version)

    @contextlib.contextmanager
    def background(self, purposes: Iterable[str]) -> Iterator[None]:
        """Run work without a user in this thread, keeping the session open for ``purposes``.

        Within this, no presence is asked: a keyset whose policy needs it is
        refused, cached or not.  The session and the keysets of ``purposes``
        do not idle out meanwhile; every other keyset's own idle timeout
        still runs.

        :raises strongroom.errors.UsageError: one of ``purposes`` needs presence.
        """
        names = list(purposes)
        refused = list(  # a store's names keyset is named as its store
            dict.fromkeys(
                purpose.removesuffix(":names")
                for purpose in names
                if purpose in self._policy.presence_purposes
            )
        )
        if refused:
            raise UsageError(
                f"{', '.join(refused)} needs user presence: background work cannot hold it open"
            )
        token = self._background.set(True)
        try:
            with self._session.hold(names):
                yield
        finally:
            self._background.reset(token)

    def _session_event(self, hook: str, **kwargs: object) -> None:
        """The session's own events; a lock (the idle one included) also drops held secrets."""
        if hook == "strongroom_key_locked":
            self._forget_secrets()
        self._notify(hook, **kwargs)

    def _forget_secrets(self) -> None:
        for provider in self._providers.values():
            provider.forget_secrets()

    def lock(self, reason: str = "request") -> None:
        """Wipe the master key, every unwrapped data key and every secret a provider holds."""
        with self._guard:
            self._verified = None
            self._session.lock(reason)
            self._forget_secrets()

    def close(self) -> None:
        self.lock(reason="close")

    # wrapping

    def _provider(self, name: str) -> KeyProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise UsageError(f"no [key_providers.{name}] is configured") from None

    def _wrap_master(
        self, name: str, master: Secret, version: int, *, afresh: bool = False
    ) -> ProviderWrap:
        """``master`` wrapped by provider ``name``; ``afresh``: under a new root secret."""
        provider = self._provider(name)
        wrap = provider.rewrap if afresh else provider.wrap
        blob = wrap(bytes(master.view()), WrapContext(self.account, MASTER, version))
        return ProviderWrap(use=self._provider_backends.get(name, "?"), blob=blob)


def _combined(account: str, failures: list[tuple[str, StrongroomError]]) -> StrongroomError:
    """One error for every provider failing, naming each one's answer (never a secret).

    Every provider refusing the secret offered is an :class:`UnlockFailedError`;
    every wrap failing to authenticate (the record was altered, or every root
    differs) an :class:`IntegrityError`; every configured secret source
    unusable a :class:`SecretSourceError`; any other mix a :class:`KeyUnavailableError`.
    """
    answers = "; ".join(f"{name}: {_answer(exc)}" for name, exc in failures)
    message = f"could not unlock account {account!r}: {answers}"
    if all(isinstance(exc, UnlockFailedError) for _, exc in failures):
        return UnlockFailedError(message)
    if all(isinstance(exc, IntegrityError) for _, exc in failures):
        return IntegrityError(message)
    if all(isinstance(exc, SecretSourceError) for _, exc in failures):
        return SecretSourceError(message)
    return KeyUnavailableError(message)


def _answer(exc: StrongroomError) -> str:
    if isinstance(exc, AuthenticationError):
        return "its wrap did not open under this provider's root (another key, or an altered wrap)"
    return str(exc)
