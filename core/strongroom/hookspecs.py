"""Hooks: events every interested plugin hears, fired through pluggy.

Slots (cipher suite, key provider, store, transport) hold one backend chosen
by name; hooks are for everything that many plugins may want to observe or
contribute to.  A hook plugin is any object or module with functions marked
``@strongroom.hookimpl`` and named after a spec below; distributions
register one under the ``strongroom.plugins`` entry-point group.

No hook receives secret material: key events carry names and version
numbers, never keys, and request hooks see requests whose repr hides bodies.
Unless a spec says ``firstresult``, every implementation is called and the
non-``None`` results are collected in a list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from strongroom._stack import Strongroom
    from strongroom.transport import SyncRequest, SyncResponse

__all__ = [
    "PROJECT_NAME",
    "AuditEvent",
    "IntegritySignal",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "strongroom"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a function as a strongroom hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class AuditEvent:
    """Something security-relevant happened.  ``details`` never holds a secret."""

    action: str
    account: str
    outcome: str = "ok"
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IntegritySignal:
    """A plugin's view of the device: rooted, debugged, emulated, tampered app."""

    source: str
    compromised: bool
    reason: str = ""


# configuration


@hookspec
def strongroom_configure(strongroom: Strongroom) -> None:
    """Called once, after a ``Strongroom`` is built from its config.

    Plugins read ``strongroom.config`` here; they must not import backends.
    """


@hookspec
def strongroom_unconfigure(strongroom: Strongroom) -> None:
    """Called once when the ``Strongroom`` is closed; release what ``configure`` took."""


# key lifecycle


@hookspec
def strongroom_key_unlocked(account: str, provider: str) -> None:
    """The account's master key was unlocked through the named provider."""


@hookspec
def strongroom_key_locked(account: str, reason: str) -> None:
    """The account's session was locked (``reason``: "request", "idle", "close")."""


@hookspec
def strongroom_key_rotated(account: str, purpose: str, old_version: int, new_version: int) -> None:
    """A keyset got a new primary version (``purpose`` "master" for the master key)."""


@hookspec
def strongroom_key_retired(account: str, purpose: str, version: int) -> None:
    """A key version stopped being used for decryption; it still exists."""


@hookspec
def strongroom_key_destroyed(account: str, purpose: str, version: int) -> None:
    """A key version was erased; what it protected is now unreadable."""


@hookspec
def strongroom_account_wiped(account: str) -> None:
    """An account's keys and then its data were destroyed."""


# audit and presence


@hookspec
def strongroom_audit_event(event: AuditEvent) -> None:
    """Record a security-relevant event, for example to an append-only log."""


@hookspec(firstresult=True)
def strongroom_request_user_presence(account: str, reason: str) -> bool | None:
    """Ask the user to confirm presence (biometric, PIN, touch) before a key is used.

    The first plugin that answers decides: ``True`` to allow, ``False`` to
    refuse.  ``None`` means "not mine to answer"; if no plugin answers, a
    provider that needs presence refuses.
    """


@hookspec
def strongroom_device_integrity() -> IntegritySignal | None:
    """Report signals about the device; any ``compromised`` one is enforced by policy."""


# transport


@hookspec
def strongroom_pin_failure(host: str, presented: Sequence[str], expected: Sequence[str]) -> None:
    """A server presented keys (SPKI SHA-256, base64) that match no pin; the request failed."""


@hookspec
def strongroom_sign_request(request: SyncRequest) -> Mapping[str, str] | None:
    """Return headers to add to an outgoing request (a signature, a nonce, a timestamp)."""


@hookspec
def strongroom_check_response(request: SyncRequest, response: SyncResponse) -> None:
    """Verify a response; raise :class:`strongroom.errors.IntegrityError` to reject it."""


# logging


@hookspec
def strongroom_redaction_patterns() -> Sequence[str] | None:
    """Return regular expressions whose matches are masked in strongroom's log output."""
