"""``Strongroom.send``: a request signed by the hook plugins, sent, and its response checked.

Kept apart from ``_stack.py`` so that building a stack imports none of it.
Signing is fail closed: with ``[signing]`` configured, a request that no
plugin signed is never sent.

Two signed refusals are answered by signing afresh and sending once more:
one of the timestamp (the signer has corrected its clock), and a replay of
a request the transport may repeat (idempotent, or carrying an
``Idempotency-Key``).  The transport retries a dropped connection with the
same signed bytes; when the first attempt reached the server and only the
answer was lost, the retry is refused as a replay, and only a new
signature can get the answer.  A request that may not be repeated is never
sent again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strongroom.errors import ClockSkewError, PluginError, RequestRefusedError, UsageError
from strongroom.signing.headers import SIGNATURE
from strongroom.transport import is_repeatable

if TYPE_CHECKING:
    from strongroom._stack import Strongroom
    from strongroom.transport import SyncRequest, SyncResponse

__all__ = ["send"]


def send(stack: Strongroom, request: SyncRequest) -> SyncResponse:
    """Sign, send and check ``request``; after a signed refusal that allows it, once more.

    :raises strongroom.errors.PluginError: two plugins set one header, or
        ``[signing]`` is configured and nothing signed the request.
    :raises strongroom.errors.UsageError: a plugin sets a header the request has.
    :raises strongroom.errors.ClockSkewError: refused for its timestamp twice.
    :raises strongroom.errors.RequestRefusedError: refused as a replay twice,
        or once when the request may not be repeated.
    """
    retried: set[str] = set()
    while True:
        try:
            return _attempt(stack, request)
        except ClockSkewError:  # the signer corrected its offset: a new signature, once
            if "timestamp" in retried:
                raise
            retried.add("timestamp")
        except RequestRefusedError as refused:
            if refused.reason != "replay" or "replay" in retried or not is_repeatable(request):
                raise
            retried.add("replay")


def _attempt(stack: Strongroom, request: SyncRequest) -> SyncResponse:
    signed = _signed(stack, request)
    response = stack.transport.send(signed)
    if stack._listened_to:
        stack.hook.strongroom_check_response(request=signed, response=response)
    return response


def _signed(stack: Strongroom, request: SyncRequest) -> SyncRequest:
    """``request`` with every header the ``strongroom_sign_request`` plugins return."""
    # with [signing], asking builds the plugin manager, which registers the signer
    listening = stack._listened_to or stack.config.signing is not None
    answers = stack.hook.strongroom_sign_request(request=request) if listening else []
    taken = {name.lower() for name in request.headers}
    added: dict[str, str] = {}
    for answer in answers:
        for name, value in (answer or {}).items():
            if name.lower() in taken:
                error = PluginError if name.lower() in {n.lower() for n in added} else UsageError
                raise error(f"header {name} is set twice (by the request or by two plugins)")
            taken.add(name.lower())
            added[name] = value
    signed = SIGNATURE.lower() in {name.lower() for name in added}
    if stack.config.signing is not None and not signed:
        raise PluginError(
            "[signing] is configured but no plugin signed the request; it was not sent"
        )
    if not added:
        return request
    return dataclasses.replace(request, headers={**request.headers, **added})
