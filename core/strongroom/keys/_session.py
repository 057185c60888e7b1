"""The unlocked state of an account: its master key and the data keys unwrapped under it.

Everything secret that ``AccountKeys`` holds in memory lives here, so that
one place decides when it is wiped: on lock, on close, when another master
key is installed, and when the idle timer fires.  It shares the
account's guard: ``AccountKeys`` calls it under that guard, and locking
takes it, since the idle timer locks from its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import KeyLockedError
from strongroom.secret import Secret

__all__ = ["DataKey", "Session"]


@dataclass(frozen=True)
class DataKey:
    """One unwrapped data key version; its material is a wiped-on-lock handle."""

    purpose: str
    version: int
    suite: CipherSuite
    material: Secret


class Session:
    """The master key of one account while it is unlocked, with an idle timer.

    The session locks itself after ``idle_timeout`` seconds without a use of
    the master key or a cached data key (``None``: never).  ``notify`` fires
    the lifecycle hook when it is locked.
    """

    def __init__(
        self,
        account: str,
        idle_timeout: float | None,
        guard: threading.RLock,
        notify: Callable[..., Any],
    ) -> None:
        self._account = account
        self._idle_timeout = idle_timeout
        self._guard = guard
        self._notify = notify
        self._master: Secret | None = None
        self._master_version = 0
        self._data_keys: dict[tuple[str, int], DataKey] = {}
        self._timer: threading.Timer | None = None

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
        self._touch()

    def switch(self, master: Secret, version: int) -> None:
        """Hold ``master`` without wiping anything or restarting the idle timer.

        ``rotate_master`` seals the data keys under the new master key this
        way before the record is saved, and switches back if that fails.
        """
        self._master, self._master_version = master, version

    def lock(self, reason: str) -> None:
        """Stop the idle timer and wipe the master key and every data key."""
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._master is None:
                return
            self._master.wipe()
            self._master = None
            self._wipe_data_keys()
        self._notify("strongroom_key_locked", account=self._account, reason=reason)

    def master_key(self) -> Secret:
        """The master key; using it restarts the idle timer.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        if self._master is None:
            raise KeyLockedError(f"account {self._account!r} is locked; unlock it first")
        self._touch()
        return self._master

    def cached(self, purpose: str, version: int) -> DataKey | None:
        """A data key unwrapped before and not wiped since; using it restarts the idle timer."""
        key = self._data_keys.get((purpose, version))
        if key is None or key.material.wiped:
            return None
        self._touch()
        return key

    def remember(self, key: DataKey) -> None:
        self._data_keys[(key.purpose, key.version)] = key

    def forget(self, purpose: str, version: int) -> None:
        """Wipe the data key of ``version``, if it was unwrapped."""
        key = self._data_keys.pop((purpose, version), None)
        if key is not None:
            key.material.wipe()

    def _wipe_data_keys(self) -> None:
        for key in self._data_keys.values():
            key.material.wipe()
        self._data_keys.clear()

    def _touch(self) -> None:
        """Restart the idle timer; called on every use of the unlocked key."""
        if self._idle_timeout is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._idle_timeout, self.lock, kwargs={"reason": "idle"})
        self._timer.daemon = True
        self._timer.start()
