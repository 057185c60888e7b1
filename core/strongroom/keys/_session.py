"""The unlocked state of an account: its master key and the data keys unwrapped under it.

Everything secret that ``AccountKeys`` holds in memory lives here, so that
one place decides when it is wiped: on lock, on close, when another master
key is installed, and when the idle timer fires.  That includes what is
derived from a data key: each ``DataKey`` carries the sealed format's
batch and reader subkeys, and wiping the key drops them.  It shares the
account's guard: ``AccountKeys`` calls it under that guard, and locking
takes it, since the idle watcher locks from its own thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import KeyLockedError
from strongroom.secret import Secret

if TYPE_CHECKING:
    from strongroom.formats import Subkeys

__all__ = ["DataKey", "Session"]


@dataclass(frozen=True)
class DataKey:
    """One unwrapped data key version; its material is a wiped-on-lock handle.

    ``subkeys`` seals records in batches and caches the subkeys readers
    verified (``strongroom.formats.Subkeys``).  They live and die with the
    material, so :meth:`wipe` is the one way to wipe either: every path that
    drops the key (lock, close, a new master key, retiring or destroying a
    version) drops what was derived from it too.
    """

    purpose: str
    version: int
    suite: CipherSuite
    material: Secret
    subkeys: Subkeys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from strongroom.formats import Subkeys

        object.__setattr__(self, "subkeys", Subkeys(self.suite, self.material, self.version))

    def wipe(self) -> None:
        """Forget the derived subkeys, then zero the material."""
        self.subkeys.clear()
        self.material.wipe()


class Session:
    """The master key of one account while it is unlocked, with an idle deadline.

    The session locks itself after ``idle_timeout`` seconds without a use of
    the master key or a cached data key (``None``: never).  A use only moves
    the deadline; one watcher thread per unlocked period sleeps until it and
    locks if no use moved it meanwhile, so the idle lock costs a clock read
    per use, not a thread.  A purpose in ``purpose_timeouts`` also has its
    own deadline: its data keys are wiped that long after their last use,
    and ``dropped(purpose)`` is called, outside the guard.  :meth:`hold`
    keeps the session and the purposes it names from idling out while
    background work runs.  ``notify`` fires the lifecycle hook when the
    session is locked; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        account: str,
        idle_timeout: float | None,
        guard: threading.RLock,
        notify: Callable[..., Any],
        *,
        purpose_timeouts: Mapping[str, float] | None = None,
        dropped: Callable[[str], None] = lambda _purpose: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._account = account
        self._idle_timeout = idle_timeout
        self._purpose_timeouts = dict(purpose_timeouts or {})
        self._dropped = dropped
        #: When each purpose with its own timeout was last used.
        self._used: dict[str, float] = {}
        #: How many holds are open on the session, and on each purpose.
        self._holds = 0
        self._held: dict[str, int] = {}
        #: When the running watcher next wakes, on ``clock``'s scale.
        self._wake_at = 0.0
        #: Purposes whose user presence was confirmed in this unlocked period.
        self.present: set[str] = set()
        #: Changes whenever an unlocked period starts or ends.
        self.period = 0
        #: Rises whenever a key stops being usable: a period ends, a purpose or version is dropped.
        self.drops = 0
        self._guard = guard
        self._notify = notify
        self._clock = clock
        self._master: Secret | None = None
        self._master_version = 0
        self._data_keys: dict[tuple[str, int], DataKey] = {}
        self._deadline = 0.0
        #: Set to stop the running watcher; ``None`` while none runs.
        self._watcher: threading.Event | None = None

    @property
    def unlocked(self) -> bool:
        return self._master is not None

    @property
    def master_version(self) -> int:
        """The version of the master key held, which data keys are sealed under."""
        return self._master_version

    def start(self, master: Secret, version: int) -> None:
        """Hold ``master`` from now on, wiping the previous one and every data key."""
        if self._master is not None and self._master is not master:
            self._master.wipe()
        self._wipe_data_keys()
        self._master, self._master_version = master, version
        self.period += 1
        self._touch()

    def switch(self, master: Secret, version: int) -> None:
        """Hold ``master`` without wiping anything or moving the idle deadline.

        ``rotate_master`` seals the data keys under the new master key this
        way before the record is saved, and switches back if that fails.
        """
        self._master, self._master_version = master, version

    def lock(self, reason: str) -> None:
        """Stop the idle watcher and wipe the master key and every data key."""
        with self._guard:
            locked = self._wipe_all()
        if locked:
            self._notify("strongroom_key_locked", account=self._account, reason=reason)

    def master_key(self) -> Secret:
        """The master key; using it moves the idle deadline.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        if self._master is None:
            raise KeyLockedError(f"account {self._account!r} is locked; unlock it first")
        self._touch()
        return self._master

    def cached(self, purpose: str, version: int) -> DataKey | None:
        """A data key unwrapped before and not wiped since; using it moves the idle deadline."""
        key = self._data_keys.get((purpose, version))
        if key is None or key.material.wiped:
            return None
        self._touch(purpose)
        return key

    def remember(self, key: DataKey) -> None:
        self._data_keys[(key.purpose, key.version)] = key
        self._touch(key.purpose)

    @contextlib.contextmanager
    def hold(self, purposes: Iterable[str]) -> Iterator[None]:
        """Within this, neither the session nor ``purposes`` idle out; clocks restart after."""
        names = list(purposes)
        with self._guard:
            self._holds += 1
            for purpose in names:
                self._held[purpose] = self._held.get(purpose, 0) + 1
        try:
            yield
        finally:
            with self._guard:
                self._holds -= 1
                for purpose in names:
                    self._held[purpose] -= 1
                    if self._used.get(purpose) is not None:
                        self._used[purpose] = self._clock()
                if self._watcher is not None:  # a new watcher, for the new deadlines
                    self._watcher.set()
                    self._watcher = None
                if self._master is not None:
                    self._touch()
                    if self._watcher is None and self._used:  # purposes still idle out
                        self._start_watcher()

    def forget(self, purpose: str, version: int) -> None:
        """Wipe the data key of ``version``, if it was unwrapped."""
        key = self._data_keys.pop((purpose, version), None)
        self.drops += 1
        if key is not None:
            key.wipe()

    def _wipe_data_keys(self) -> None:
        for key in self._data_keys.values():
            key.wipe()
        self._data_keys.clear()
        self._used.clear()
        self.present.clear()

    def _drop_purpose(self, purpose: str) -> None:
        """Wipe every data key of ``purpose`` and forget its presence.  Under the guard."""
        for slot in [slot for slot in self._data_keys if slot[0] == purpose]:
            self._data_keys.pop(slot).wipe()
        self._used.pop(purpose, None)
        self.present.discard(purpose)
        self.drops += 1

    def _wipe_all(self) -> bool:
        """Stop the watcher and wipe everything; whether anything was unlocked.  Under the guard."""
        if self._watcher is not None:
            self._watcher.set()
            self._watcher = None
        if self._master is None:
            return False
        self._master.wipe()
        self._master = None
        self.period += 1
        self.drops += 1
        self._wipe_data_keys()
        return True

    def _touch(self, purpose: str | None = None) -> None:
        """Move the idle deadlines; start a watcher only if none is running."""
        now = self._clock()
        timeout = self._purpose_timeouts.get(purpose) if purpose is not None else None
        if purpose is not None and timeout is not None:
            self._used[purpose] = now
            if self._watcher is not None and now + timeout < self._wake_at:
                self._watcher.set()  # it sleeps past this purpose's deadline: start another
                self._watcher = None
        elif self._idle_timeout is None:
            return
        if self._idle_timeout is not None:
            self._deadline = now + self._idle_timeout
        if self._watcher is None:
            self._start_watcher()

    def _start_watcher(self) -> None:
        stop = self._watcher = threading.Event()
        threading.Thread(
            target=self._watch, args=(stop,), name="strongroom-idle-lock", daemon=True
        ).start()

    def _watch(self, stop: threading.Event) -> None:
        """Sleep until the next deadline; drop what passed its own, lock when the session's has."""
        while True:
            with self._guard:
                if self._watcher is not stop:
                    return  # locked, or replaced by a newer watcher
                now = self._clock()
                expired = [
                    purpose
                    for purpose, used in self._used.items()
                    if not self._held.get(purpose) and used + self._purpose_timeouts[purpose] <= now
                ]
                for purpose in expired:
                    self._drop_purpose(purpose)
                held = self._idle_timeout is None or self._holds
                session = None if held else self._deadline - now
                if session is not None and session <= 0:
                    locked = self._wipe_all()
                    break
                waits = [w for w in (session, self._next_purpose_wait(now)) if w is not None]
                done = not waits and not self._holds
                if done:
                    self._watcher = None  # nothing left to watch: the next use starts another
                # capped: Event.wait overflows past threading.TIMEOUT_MAX (an "inf" timeout)
                wait = min(*waits, 3600.0) if waits else 60.0
                self._wake_at = now + wait
            for purpose in expired:
                self._dropped(purpose)
            if done:
                return
            stop.wait(wait)
        if locked:
            self._notify("strongroom_key_locked", account=self._account, reason="idle")

    def _next_purpose_wait(self, now: float) -> float | None:
        """Seconds until the next unheld purpose idles out, if one can."""
        waits = [
            used + self._purpose_timeouts[purpose] - now
            for purpose, used in self._used.items()
            if not self._held.get(purpose)
        ]
        return max(min(waits), 0.01) if waits else None
