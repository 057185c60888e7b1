"""Audit events: what the ``strongroom_audit_event`` hook hears.

Kept apart from :mod:`strongroom.hookspecs` so that code which only emits
events (a store refusing a read) does not import pluggy.

Actions fired by shipped code (``outcome`` "ok" unless said):

=================  ==========================================================
``account.created``   ``init`` made the account's master key and keysets
``key.unlocked``      details: ``provider``
``key.unlock``        outcome "failure": no provider unlocked, or the record
                      was refused; details: ``error`` (class), ``reason``
``key.locked``        details: ``reason`` (request, idle, close, wipe, ...)
``key.rotated``       details: ``purpose``, ``old_version``, ``new_version``
``provider.rewrapped`` ``keys rotate --provider``: the master key's wrap for
                      one provider was renewed; details: ``provider``, ``use``
``key.retired``       details: ``purpose``, ``version``
``key.destroyed``     details: ``purpose``, ``version``
``account.wiped``     the account's keys and data were destroyed
``data.refused``      outcome "failure": a store refused stored data that
                      failed verification; details: ``store``, ``error``
``data.purged``       a store's retention deleted data; details: ``store``,
                      ``count``, ``reason`` ("retention"); never a key
``key.exposed``       ``database key --expose-key`` printed a store's database
                      key; details: ``store``, ``purpose``, ``version``; or
                      ``signing key --expose-key`` the request-signing key;
                      details: ``purpose``, ``version``, ``key_id``
``presence.checked``  a policy asked for user presence; outcome "failure"
                      unless the user confirmed; details: ``reason``,
                      ``answer`` (present, declined, none)
``transport.pin_failed`` outcome "failure": a server's verified chain
                      matched no pin; details: ``host``, ``mode``
                      (enforce, report-only), ``presented`` (its pins)
=================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AuditEvent"]


@dataclass(frozen=True)
class AuditEvent:
    """Something security-relevant happened.  ``details`` never holds a secret."""

    action: str
    account: str
    outcome: str = "ok"
    details: Mapping[str, str] = field(default_factory=dict)
