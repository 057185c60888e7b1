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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

from strongroom.audit import AuditEvent

if TYPE_CHECKING:
    from strongroom._stack import Strongroom
    from strongroom.transport import SyncRequest, SyncResponse

__all__ = [  # the hook specs too, so that help(strongroom.hookspecs) shows them
    "PROJECT_NAME",
    "AuditEvent",
    "IntegritySignal",
    "hookimpl",
    "hookspec",
    "strongroom_account_wiped",
    "strongroom_audit_event",
    "strongroom_check_response",
    "strongroom_configure",
    "strongroom_device_integrity",
    "strongroom_key_destroyed",
    "strongroom_key_locked",
    "strongroom_key_retired",
    "strongroom_key_rotated",
    "strongroom_key_unlocked",
    "strongroom_pin_failure",
    "strongroom_redaction_patterns",
    "strongroom_request_user_presence",
    "strongroom_sign_request",
    "strongroom_unconfigure",
]

PROJECT_NAME = "strongroom"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a function as a strongroom hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


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
    """The account's master key was unlocked through the named provider.

    Fired by :meth:`strongroom.keys.AccountKeys.unlock` (not by ``init``,
    which creates the key already unlocked).  Also the audit event ``key.unlocked``.
    """


@hookspec
def strongroom_key_locked(account: str, reason: str) -> None:
    """The account's session was locked, and every key it held wiped from memory.

    ``reason``: "request" (``lock``), "idle" (the idle timeout), "close"
    (the stack closed, ``init``'s included), "wipe", "master key rotated"
    (rotated by another process and not unwrappable again), "accept
    rollback", "key record" (the unlock agent found its record gone or
    altered).  Fired only by a session that was unlocked.  Also the audit
    event ``key.locked``.
    """


@hookspec
def strongroom_key_rotated(account: str, purpose: str, old_version: int, new_version: int) -> None:
    """A keyset got a new primary version (``purpose`` "master" for the master key).

    Fired by ``AccountKeys.rotate`` and ``rotate_master``.  Also the audit event ``key.rotated``.
    """


@hookspec
def strongroom_key_retired(account: str, purpose: str, version: int) -> None:
    """A key version stopped being used for decryption; it still exists.

    Fired by ``AccountKeys.retire``.  Also the audit event ``key.retired``.
    """


@hookspec
def strongroom_key_destroyed(account: str, purpose: str, version: int) -> None:
    """A key version was erased; what it protected is now unreadable.

    Fired by ``AccountKeys.destroy``.  Also the audit event ``key.destroyed``.
    """


@hookspec
def strongroom_account_wiped(account: str) -> None:
    """An account's keys and then its data were destroyed.

    Fired by :meth:`strongroom.Strongroom.wipe` (``strongroom wipe``), after
    ``strongroom_key_locked`` with reason "wipe" if the session was unlocked.
    Also the audit event ``account.wiped``.
    """


# audit and presence


@hookspec
def strongroom_audit_event(event: AuditEvent) -> None:
    """Record a security-relevant event, for example to an append-only log.

    Every action shipped code fires is listed in :mod:`strongroom.audit`:
    each key-lifecycle hook above, ``account.created``, a failed unlock
    (``key.unlock``, outcome "failure") and data a store refused
    (``data.refused``).  ``strongroom_contrib.audit_log`` writes them as JSON lines.
    """


@hookspec(firstresult=True)
def strongroom_request_user_presence(account: str, reason: str) -> bool | None:
    """Ask the user to confirm presence (biometric, PIN, touch) before a key is used.

    The first plugin that answers decides: ``True`` to allow, ``False`` to
    refuse.  ``None`` means "not mine to answer"; if no plugin answers, the
    key is refused (``KeyLockedError``).  Fired before unlocking through a
    provider, and before a store's first key use in an unlocked period,
    whose config says ``policy = "presence"``; never in background work
    (``Strongroom.background``).  ``reason`` says which, for the prompt.
    The ``strongroom`` CLI registers its own answer, which asks on the
    terminal for the passphrase of one of the account's passphrase providers.
    """


@hookspec
def strongroom_device_integrity() -> IntegritySignal | None:
    """Report signals about the device; any ``compromised`` one is enforced by policy.

    Not fired yet: the user-presence and device policy that will ask it
    comes with the hardware-backed key providers (Vault, PKCS#11).
    """


# transport


@hookspec
def strongroom_pin_failure(host: str, presented: Sequence[str], expected: Sequence[str]) -> None:
    """A server presented keys that match no pin of its host (pins as ``sha256/<base64>``).

    Fired by the ``https`` transport during the TLS handshake, before any
    request byte is sent: ``presented`` is the verified chain, leaf first;
    ``expected`` the pins of every matching host pattern.  In enforce mode
    the request then fails with :class:`strongroom.errors.PinMismatchError`;
    in report-only mode it goes through.  A listener that raises is logged
    and does not change the outcome.
    """


@hookspec
def strongroom_sign_request(request: SyncRequest) -> Mapping[str, str] | None:
    """Return headers to add to an outgoing request (a signature, a nonce, a timestamp).

    Fired by :meth:`strongroom.Strongroom.send` before the transport sends
    it; the answers are merged, and a header set twice (by two plugins, or
    one the request has) is an error.  With a ``[signing]`` table the
    built-in signer (:mod:`strongroom.signing.signer`) answers, and a
    request it did not sign is never sent.
    """


@hookspec
def strongroom_check_response(request: SyncRequest, response: SyncResponse) -> None:
    """Verify a response; raise :class:`strongroom.errors.IntegrityError` to reject it.

    Fired by :meth:`strongroom.Strongroom.send` with the request as signed
    (its headers include every ``strongroom_sign_request`` answer).  The
    built-in signer checks the server's signature over status, body and the
    request's nonce, and raises :class:`~strongroom.errors.RequestRefusedError`
    for the verifier's refusals (``ClockSkewError``, which ``send`` retries
    once, for a signed refusal of the timestamp).
    """


# logging


@hookspec
def strongroom_redaction_patterns() -> Sequence[str] | None:
    """Return regular expressions whose matches are masked in strongroom's log output.

    Asked once when a :class:`~strongroom.Strongroom` is built; the masking
    is done by :class:`strongroom.redaction.RedactingFilter`, which the CLI
    puts on its stderr handler and an application puts on its own.
    """
