"""When a key may be used: user presence before a provider or a store's key, and idle timeouts.

A config sets ``policy`` on a provider or a store: ``unlocked`` (the
default: usable while the session is unlocked) or ``presence`` (the user
confirms presence first, through the ``strongroom_request_user_presence``
hook).  For a provider, presence is asked before unwrapping through it;
for a store, before its keyset's first use in each unlocked period, and
again after its own ``idle_timeout`` dropped its keys.  Work that runs
without a user (:meth:`~strongroom.Strongroom.background`) can never be
present, so it cannot open a ``presence`` store, and it keeps the session
open only for the stores it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from strongroom.config import POLICIES, PRESENCE, UNLOCKED

__all__ = ["POLICIES", "PRESENCE", "UNLOCKED", "KeyPolicy", "PresenceCheck"]

#: Asks the user to confirm presence: ``(account, reason)`` to ``True`` (present),
#: ``False`` (declined) or ``None`` (nothing could ask).
PresenceCheck = Callable[[str, str], "bool | None"]


@dataclass(frozen=True)
class KeyPolicy:
    """What an account's config says about presence and idle timeouts, by name."""

    #: Config names of the providers that need presence before unwrapping.
    presence_providers: frozenset[str] = frozenset()
    #: Keyset purposes that need presence before their first use in an unlocked period.
    presence_purposes: frozenset[str] = frozenset()
    #: Seconds after which an unused keyset's data keys are wiped, by purpose.
    idle_timeouts: Mapping[str, float] = field(default_factory=dict)
