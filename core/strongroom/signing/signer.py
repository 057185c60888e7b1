"""The client half of request signing: a hook plugin above any transport.

``sign_request`` is the whole signature as a function (what the hook and
benchmarks call); :class:`RequestSigner` is the hook plugin a ``Strongroom``
registers itself when its config has a ``[signing]`` table, so blocking
autoloaded plugins can never drop it.  Its MAC key is derived from the
primary version of the account's ``signing`` keyset once per unlocked
session (:mod:`strongroom.signing.keying`) and wiped when the session locks
or the keyset changes.  It checks every response's signature in constant
time; a signed refusal of its timestamp corrects its clock offset and
raises :class:`~strongroom.errors.ClockSkewError`, which ``Strongroom.send``
retries once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from strongroom.errors import ClockSkewError, IntegrityError, RequestRefusedError, UsageError
from strongroom.hookspecs import hookimpl
from strongroom.keys.purposes import SIGNING
from strongroom.secret import Secret
from strongroom.signing import headers as h
from strongroom.signing.canonical import CanonicalError, canonical_request, canonical_response
from strongroom.signing.keying import derive_mac_key, version_of, wire_key_id

if TYPE_CHECKING:
    from strongroom.config import SigningTable
    from strongroom.keys import AccountKeys
    from strongroom.transport import SyncRequest, SyncResponse

__all__ = ["RequestSigner", "check_response", "sign_request"]

_urandom = os.urandom
_sha256 = hashlib.sha256
_digest = hmac.digest


def sign_request(
    key: bytes | bytearray | memoryview,
    key_id: str,
    method: str,
    target: str,
    body: bytes,
    *,
    idempotency_key: str = "",
    challenge: str = "",
    now: float,
) -> dict[str, str]:
    """The headers that sign one request: key id, timestamp, a fresh nonce, the signature.

    ``target`` is the path and query the server will see; ``idempotency_key``
    and ``challenge`` are the values of the headers the request carries
    (``""``: none), both covered by the signature.

    :raises strongroom.errors.CanonicalError: the method or target has no canonical form.
    """
    timestamp = str(int(now))
    nonce = h.b64(_urandom(16))
    message = canonical_request(
        method,
        target,
        body_sha256=_sha256(body).hexdigest(),
        timestamp=timestamp,
        nonce=nonce,
        key_id=key_id,
        idempotency_key=idempotency_key,
        challenge=challenge,
    )
    return {
        h.KEY_ID: key_id,
        h.TIMESTAMP: timestamp,
        h.NONCE: nonce,
        h.SIGNATURE: h.b64(_digest(key, message, "sha256")),
    }


def check_response(
    key: bytes | bytearray | memoryview, key_id: str, nonce: str, response: SyncResponse
) -> int | None:
    """The server time of a response signed for the request ``nonce``; ``None`` if unsigned.

    :raises strongroom.errors.IntegrityError: a signature that does not verify,
        or a malformed or repeated signature header.
    """
    status, body, headers = response.status, response.body, response.headers
    try:
        signature = h.find(headers, h.RESPONSE_SIGNATURE)
        server_time = h.find(headers, h.SERVER_TIME)
    except ValueError as exc:
        raise IntegrityError(f"the response (status {status}) is not valid: {exc}") from None
    if signature is None:
        return None
    if server_time is None or not (h.is_signature(signature) and h.is_time(server_time)):
        raise IntegrityError(f"the response (status {status}) has a malformed signature")
    message = canonical_response(
        status,
        body_sha256=_sha256(body).hexdigest(),
        nonce=nonce,
        key_id=key_id,
        server_time=server_time,
    )
    if not hmac.compare_digest(h.b64(_digest(key, message, "sha256")), signature):
        raise IntegrityError(
            f"the response (status {status}) failed its signature check: it was altered "
            "in transit or not signed by the server"
        )
    return int(server_time)


class RequestSigner:
    """Signs every request a ``Strongroom`` sends and checks every response.

    ``keys`` returns the account's key hierarchy (the session must be
    unlocked to sign); ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        settings: SigningTable,
        *,
        account: str,
        keys: Callable[[], AccountKeys],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._account = account
        self._keys = keys
        self._clock = clock
        #: Seconds to add to the local clock: the server's time minus ours, once it told us.
        self.offset = 0.0
        self._guard = threading.Lock()
        #: MAC keys derived in this unlocked session, by key version; the primary's version.
        self._macs: dict[int, Secret] = {}
        self._primary: int | None = None

    # keys

    def _mac(self, version: int | None = None) -> tuple[int, memoryview]:
        """The MAC key of ``version`` (default: the primary), derived once per session.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the account has no signing
            keyset ('strongroom init' creates it once [signing] is configured).
        """
        with self._guard:
            wanted = self._primary if version is None else version
            if wanted is not None and wanted in self._macs:
                return wanted, self._macs[wanted].view()
        data_key = self._keys().data_key(SIGNING, version)
        derived = derive_mac_key(data_key.material.view(), self._account, data_key.version)
        mac = Secret(bytearray(derived), label=f"request-signing key v{data_key.version}")
        with self._guard:
            mac = self._macs.setdefault(data_key.version, mac)
            if version is None:
                self._primary = data_key.version
            return data_key.version, mac.view()

    def forget_keys(self) -> None:
        """Wipe every MAC key held; the next request derives again."""
        with self._guard:
            for mac in self._macs.values():
                mac.wipe()
            self._macs.clear()
            self._primary = None

    @hookimpl
    def strongroom_key_locked(self, account: str, reason: str) -> None:
        self.forget_keys()

    @hookimpl
    def strongroom_key_rotated(
        self, account: str, purpose: str, old_version: int, new_version: int
    ) -> None:
        if purpose == SIGNING:
            self.forget_keys()

    @hookimpl
    def strongroom_key_retired(self, account: str, purpose: str, version: int) -> None:
        if purpose == SIGNING:
            self.forget_keys()

    @hookimpl
    def strongroom_key_destroyed(self, account: str, purpose: str, version: int) -> None:
        if purpose == SIGNING:
            self.forget_keys()

    # requests

    @hookimpl
    def strongroom_sign_request(self, request: SyncRequest) -> Mapping[str, str]:
        """Sign ``request`` with the primary key, at the local time corrected by the offset.

        :raises strongroom.errors.UsageError: its path has no canonical form.
        """
        version, key = self._mac()
        idempotency_key = _header(request.headers, h.IDEMPOTENCY_KEY) or ""
        if not h.is_idempotency_key(idempotency_key):
            raise UsageError(f"a malformed {h.IDEMPOTENCY_KEY} header: printable ASCII only")
        challenge = _header(request.headers, h.CHALLENGE) or ""
        if not h.is_challenge(challenge):
            raise UsageError(f"a malformed {h.CHALLENGE} header: printable ASCII only")
        try:
            return sign_request(
                key,
                wire_key_id(self.settings.key_id, version),
                request.method,
                request.path,
                request.body,
                idempotency_key=idempotency_key,
                challenge=challenge,
                now=self._clock() + self.offset,
            )
        except CanonicalError as exc:
            raise UsageError(f"the request {request!r} cannot be signed: {exc}") from None

    @hookimpl
    def strongroom_check_response(self, request: SyncRequest, response: SyncResponse) -> None:
        """Check the response's signature; turn the verifier's refusals into errors.

        :raises strongroom.errors.IntegrityError: a wrong signature, or none
            where ``responses = "required"``.
        :raises strongroom.errors.ClockSkewError: a signed refusal of the
            timestamp; the offset is corrected first.
        :raises strongroom.errors.RequestRefusedError: any other refusal of the signature.
        """
        key_id = request.headers.get(h.KEY_ID)
        nonce = request.headers.get(h.NONCE)
        if key_id is None or nonce is None:
            return  # not a request this signer signed
        status = response.status
        _, key = self._mac(version_of(key_id))
        server_time = check_response(key, key_id, nonce, response)
        refused = _header(response.headers, h.REJECTED)
        if server_time is None:
            if refused is not None:
                raise RequestRefusedError(
                    f"the server refused the request signature ({status}, unsigned refusal "
                    f"{refused[:20]!r}): is key id {key_id!r} provisioned on the server?",
                    status=status,
                )
            if self.settings.responses == "required":
                raise IntegrityError(
                    f"the response (status {status}) is not signed, and [signing] "
                    "responses = 'required'"
                )
            return
        if refused is None:
            return
        reason = _reason(response.body)
        if reason == "timestamp":
            self.offset = server_time - self._clock()
            raise ClockSkewError(
                f"the server refused the request's timestamp ({status}); the clock is off by "
                f"{self.offset:+.0f} s, corrected",
                status=status,
                server_time=server_time,
            )
        if reason == "unavailable":
            message = f"the server could not check the request's nonce ({status}); try later"
        else:
            message = f"the server refused the request signature ({status} {reason})"
        raise RequestRefusedError(message, status=status, reason=reason)

    def __repr__(self) -> str:
        settings = self.settings
        return f"<RequestSigner key_id={settings.key_id!r} responses={settings.responses}>"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header in any case; a repeated one counts as absent only if none is there."""
    value = headers.get(name)
    if value is not None:
        return value
    try:
        return h.find(headers, name)
    except ValueError:
        raise IntegrityError(f"header {name} appears more than once") from None


def _reason(body: bytes) -> str:
    """The reason code of a verifier's signed refusal body."""
    try:
        reason = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return reason if isinstance(reason, str) else "unknown"
