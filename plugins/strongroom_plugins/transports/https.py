"""The ``https`` transport: TLS 1.2+ (or 1.3 only), verified chains, SPKI pins, no redirects.

One ``httpx.Client`` per transport keeps connections alive; the pin check
runs once per TLS handshake (:mod:`._https_tls`), before any request byte.
A 3xx is an error, never followed: a signed request is bound to the path
it was signed for, and following would send it, or a re-signed one, where
the server pointed.  Retries are bounded, only for idempotent requests
(GET, HEAD, PUT, DELETE, OPTIONS; a POST with an ``Idempotency-Key``), and
only for connection failures and timeouts before a response; never after a
certificate, TLS or pin failure.  ``total_timeout`` bounds every attempt,
the backoff between them and the reading of the body.  Messages name the
host and what failed, never a body or a header's value.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

import httpx

from strongroom.audit import AuditEvent
from strongroom.errors import TransportError
from strongroom.transport import (
    SyncRequest,
    SyncResponse,
    Transport,
    TransportBinding,
    is_repeatable,
)
from strongroom_plugins.transports._https_settings import HttpsSettings, origin_of, policy_of
from strongroom_plugins.transports._https_tls import describe_failure, pinning_context

__all__ = ["HttpsTransport"]

_BACKOFF_BASE_S = 0.1
_BACKOFF_CAP_S = 2.0
#: A path and query as sent: RFC 3986 characters only, so nothing is re-encoded.
_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|\?|$)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class _Retry(Exception):
    """An attempt failed before any response; ``error`` is what to raise if none is left."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class HttpsTransport(Transport[HttpsSettings]):
    """Sends sync requests over pinned HTTPS to the origin in ``url``."""

    Settings = HttpsSettings

    def __init__(
        self, settings: HttpsSettings | None = None, *, binding: TransportBinding | None = None
    ) -> None:
        super().__init__(settings, binding=binding)
        self._origin, _, _ = origin_of(self.settings.url)
        self._where = self._origin.removeprefix("https://")
        self.policy = policy_of(self.settings)
        context = pinning_context(self.settings.ca_bundle, self.settings.min_tls, self._check)
        self._client = httpx.Client(
            verify=context, follow_redirects=False, trust_env=False, http2=False
        )

    def _check(self, host: str, chain: list[bytes]) -> None:
        self.policy.check(host, chain, report=self._report)

    def _report(self, host: str, presented: Sequence[str], expected: Sequence[str]) -> None:
        self.binding.pin_failure(host, presented, expected)
        mode = "report-only" if self._report_only(host) else "enforce"
        details = {"host": host, "mode": mode, "presented": " ".join(presented)}
        self.binding.audit(
            AuditEvent("transport.pin_failed", self.binding.account, "failure", details)
        )

    def _report_only(self, host: str) -> bool:
        from strongroom.pinning import host_matches

        sets = [s for s in self.policy.pin_sets if host_matches(s.pattern, host)]
        return all(s.report_only for s in sets)

    def close(self) -> None:
        self._client.close()

    def send(self, request: SyncRequest) -> SyncResponse:
        """Send ``request`` to ``url`` + ``request.path``; see the module doc for the rules."""
        method = request.method.upper()
        path = self._checked_path(request.path)
        headers = dict(request.headers)
        names = {name.lower() for name in headers}
        if "accept-encoding" not in names:
            headers["Accept-Encoding"] = "identity"  # the body arrives as the server signed it
        attempts = 1 + (self.settings.retries if is_repeatable(request) else 0)
        deadline = time.monotonic() + self.settings.total_timeout
        for attempt in range(attempts):
            try:
                return self._attempt(method, path, headers, request.body, deadline)
            except _Retry as failed:
                pause = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)
                pause *= random.random()  # noqa: S311 - jitter, not a secret
                if attempt + 1 == attempts or time.monotonic() + pause >= deadline:
                    raise failed.error from None
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _checked_path(self, path: str) -> str:
        if not _PATH.fullmatch(path) or _DOT_SEGMENT.search(path) or _BAD_ESCAPE.search(path):
            raise TransportError(
                f"{self._where}: a request path must start with one '/' and hold only"
                " URL characters, no '.' or '..' segment and no fragment"
            )
        return path

    def _timeouts(self, deadline: float) -> httpx.Timeout:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(
                f"{self._where}: timed out: total_timeout of {self.settings.total_timeout:g} s"
            )
        connect = min(self.settings.connect_timeout, left)
        read = min(self.settings.read_timeout, left)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    def _attempt(
        self, method: str, path: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> SyncResponse:
        timeout = self._timeouts(deadline)
        where = self._where
        try:
            with self._client.stream(
                method, self._origin + path, content=body, headers=headers, timeout=timeout
            ) as response:
                return self._response(method, path, response, deadline)
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting"
            raise _Retry(TransportError(f"{where}: timed out {phase}")) from None
        except httpx.ConnectError as exc:
            reason, retry = describe_failure(exc, self.settings.min_tls)
            error = TransportError(f"{where}: {reason}")
            if retry:
                raise _Retry(error) from None
            raise error from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            reason = "closed the connection" if isinstance(exc, httpx.RemoteProtocolError) else ""
            message = reason or describe_failure(exc, self.settings.min_tls)[0]
            raise _Retry(TransportError(f"{where}: {message} before a response")) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{where}: request failed: {type(exc).__name__}") from None

    def _response(
        self, method: str, path: str, response: httpx.Response, deadline: float
    ) -> SyncResponse:
        """Read the body within the deadline and size limit; a response is never retried."""
        where = self._where
        if 300 <= response.status_code < 400:
            target = _shown_location(response.headers.get("location", ""), self._origin + path)
            raise TransportError(
                f"{where}: {method} {path.partition('?')[0]} answered {response.status_code}"
                f" redirecting to {target}; redirects are never followed"
            )
        limit = self.settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TransportError(f"{where}: response larger than max_response_bytes ({limit})")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > limit:
                    raise TransportError(
                        f"{where}: response larger than max_response_bytes ({limit})"
                    )
                if time.monotonic() > deadline:
                    raise TransportError(f"{where}: timed out reading the response body")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise TransportError(f"{where}: timed out reading the response body") from None
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{where}: response body cut short ({type(exc).__name__})"
            ) from None
        return SyncResponse(response.status_code, b"".join(chunks), dict(response.headers.items()))


def _shown_location(location: str, base: str) -> str:
    """Where a redirect points, without credentials, query or fragment, printable."""
    from urllib.parse import urljoin, urlsplit

    try:
        parts = urlsplit(urljoin(base, location))
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparsable location"
    shown = f"{parts.scheme}://{host}{port}{parts.path}"[:200]
    return "".join(c if c.isprintable() else "?" for c in shown) if location else "nowhere"
