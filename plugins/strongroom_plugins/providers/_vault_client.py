"""The ``vault`` provider's connection: authentication, token renewal, error translation.

One hvac client per provider, built on first use.  The token comes from a
:class:`~strongroom.settings.SecretRef` (``token``), a file re-read when
Vault refuses the token it held (``token_file``: a Vault Agent sink rotates
it), or an AppRole login (``role_id`` and ``secret_id``).  Its TTL is
learnt at login (or by ``lookup-self``); before each request a renewable
token whose TTL has fallen below ``renew_below_s`` is renewed, and an
AppRole token that cannot be renewed any more is replaced by logging in
again.  The token is never put in a message, a log line or a repr.

Every request runs in :meth:`VaultConnection.run`, which turns what hvac and
requests raise into strongroom's errors, each one line naming the cause:
unreachable, TLS refused, timed out, sealed, token refused.  Transit's own
400 and 404 answers are left to the caller, which knows what they mean.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions as vault_errors
import requests

from strongroom.errors import (
    ProviderUnreachableError,
    SecretSourceError,
    UnlockFailedError,
)
from strongroom.settings import SecretRef
from strongroom_plugins.providers._vault_settings import VaultSettings

__all__ = ["VaultConnection"]

T = TypeVar("T")


class VaultConnection:
    """An authenticated hvac client for one provider, renewed as its token ages."""

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings
        self._lock = threading.RLock()
        self._client: hvac.Client | None = None
        #: ``time.monotonic()`` at which the token expires; ``None``: it does not.
        self._expires: float | None = None
        self._renewable = False

    @property
    def where(self) -> str:
        return f"Vault at {self._settings.url}"

    def run(self, action: str, call: Callable[[hvac.Client], T]) -> T:
        """``call(client)`` with a fresh token; ``action`` names the request in errors.

        A refused token read from ``token_file`` is read again once, in case
        the agent writing it has replaced it.

        :raises strongroom.errors.ProviderUnreachableError: unreachable, TLS
            refused, timed out, sealed, or a server error.
        :raises strongroom.errors.UnlockFailedError: the token was refused.
        :raises strongroom.errors.KeyLockedError: the token's source holds none now.
        :raises strongroom.errors.SecretSourceError: the token's source is unusable.
        """
        with self._lock:
            for attempt in (1, 2):
                try:
                    # Inside the retry: a renewal refused is a refused token like any other.
                    client = self._fresh_client()
                    with self.translated(action):
                        answer: T = self._checked(call(client), action)
                        return answer
                except UnlockFailedError:
                    if attempt == 2 or not self._settings.token_file:
                        raise
                    self.close()  # read the file again: a new token may be there
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def translated(self, action: str) -> Iterator[None]:
        """Translate hvac's and requests' errors; Transit's 400 and 404 pass through."""
        where = self.where
        try:
            yield
        except requests.exceptions.SSLError as exc:
            raise ProviderUnreachableError(
                f"{where}: TLS verification failed; set ca_bundle to the CA that signed its "
                "certificate"
            ) from exc
        except _Redirected as exc:
            raise ProviderUnreachableError(
                f"{where} answered {action} with a redirect, which is never followed (it would "
                "carry the token and the request elsewhere); set url to the server that answers"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise ProviderUnreachableError(
                f"{where} did not answer within {self._settings.timeout_s:g} s ({action})"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            cause = "connection refused" if "refused" in str(exc).lower() else "connection failed"
            raise ProviderUnreachableError(f"{where} is unreachable ({cause})") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise ProviderUnreachableError(f"{where}: {type(exc).__name__} ({action})") from exc
        except (vault_errors.VaultDown, vault_errors.VaultNotInitialized) as exc:
            state = "sealed" if "sealed" in str(exc).lower() else "not ready (HTTP 503)"
            raise ProviderUnreachableError(
                f"{where} is {state}; unseal it, or unlock with another provider"
            ) from exc
        except (vault_errors.Forbidden, vault_errors.Unauthorized) as exc:
            raise UnlockFailedError(
                f"{where} refused the token (permission denied) for {action}: it was revoked "
                "or has expired, or its policy does not allow this"
            ) from exc
        except (vault_errors.InvalidRequest, vault_errors.InvalidPath):
            raise
        except vault_errors.VaultError as exc:
            raise ProviderUnreachableError(
                f"{where} failed: {type(exc).__name__} ({action})"
            ) from exc

    def _checked(self, answer: Any, action: str) -> Any:
        """What hvac returned, unless it is a raw answer that is not Vault's JSON.

        hvac returns the ``requests.Response`` itself for anything but a 200 with
        JSON: a body-less success (204) reads as ``{}``, anything else (a proxy's
        or portal's page) is no answer from Vault.
        """
        if not isinstance(answer, requests.Response):
            return answer
        if answer.status_code == 204 or (answer.ok and not answer.content):
            return {}
        raise ProviderUnreachableError(
            f"{self.where} answered {action} with HTTP {answer.status_code} that is not "
            "Vault's JSON; is url pointing at Vault?"
        )

    def close(self) -> None:
        """Drop the client and its HTTP session; the next request authenticates again."""
        with self._lock:
            client, self._client, self._expires = self._client, None, None
        if client is not None:
            client.adapter.close()

    # authentication

    def _fresh_client(self) -> hvac.Client:
        client = self._client
        if client is None:
            client = self._client = self._login()
        elif self._expires is not None and (
            self._expires - time.monotonic() < self._settings.renew_below_s
        ):
            client = self._client = self._renewed(client)
        return client

    def _login(self) -> hvac.Client:
        settings = self._settings
        if settings.ca_bundle and not Path(settings.ca_bundle).expanduser().is_file():
            raise ProviderUnreachableError(
                f"{self.where}: ca_bundle {settings.ca_bundle} is not a file; "
                "TLS cannot be verified"
            )
        client = hvac.Client(
            url=settings.url,
            # Never hvac's default (VAULT_TOKEN or ~/.vault-token, the operator's own):
            # a request carries only the credential the settings name.
            token="",
            verify=str(Path(settings.ca_bundle).expanduser()) if settings.ca_bundle else True,
            timeout=settings.timeout_s,
            namespace=settings.namespace or None,
            allow_redirects=False,
        )
        # A redirect is refused before anything else reads the answer: hvac would follow
        # it by default, and requests keeps X-Vault-Token (and a 307's body) across hosts.
        client.adapter.session.hooks["response"].append(_refuse_redirect)
        if urlsplit(settings.url).scheme == "http":
            # Plain HTTP is allowed to loopback only: never through a proxy from the
            # environment (HTTP_PROXY, ALL_PROXY), which would carry it off this host in clear.
            client.adapter.session.trust_env = False
        try:
            if settings.role_id is not None and settings.secret_id is not None:
                role_id, secret_id = _text(settings.role_id), _text(settings.secret_id)
                try:
                    with self.translated("AppRole login"):
                        answer = client.auth.approle.login(
                            role_id, secret_id, mount_point=settings.approle_mount
                        )
                except (vault_errors.InvalidRequest, vault_errors.InvalidPath) as exc:
                    # Vault answers 400 to a wrong or expired role_id or secret_id: a refused
                    # login, never Transit's refusal of a wrap (which the caller would see).
                    raise UnlockFailedError(
                        f"{self.where} refused the AppRole login at {settings.approle_mount!r}: "
                        "the role_id or secret_id is wrong, or the secret_id has expired"
                    ) from exc
                self._learn(self._checked(answer, "AppRole login").get("auth") or {})
            else:
                source = settings.token or SecretRef("file", settings.token_file)
                client.token = _text(source)
                with self.translated("token lookup"):
                    answer = self._checked(client.auth.token.lookup_self(), "token lookup")
                    data = answer.get("data") or {}
                self._learn({"lease_duration": data.get("ttl"), "renewable": data.get("renewable")})
        except BaseException:
            client.adapter.close()
            raise
        return client

    def _learn(self, auth: dict[str, Any]) -> None:
        """Note the token's TTL (0: it never expires) and whether it renews."""
        ttl = auth.get("lease_duration")
        seconds = ttl if isinstance(ttl, int) and ttl > 0 else 0
        self._expires = time.monotonic() + seconds if seconds else None
        self._renewable = bool(auth.get("renewable"))

    def _renewed(self, client: hvac.Client) -> hvac.Client:
        """Renew the token, or log in again where AppRole can; else leave it to expire."""
        approle = self._settings.role_id is not None
        if self._renewable:
            try:
                with self.translated("token renewal"):
                    answer = client.auth.token.renew_self()
            except UnlockFailedError:
                if not approle:
                    raise
            else:
                self._learn(self._checked(answer, "token renewal").get("auth") or {})
                return client
        if not approle:
            return client
        client.adapter.close()
        self._client = None
        return self._login()


class _Redirected(requests.exceptions.RequestException):
    """Vault answered with a redirect (only ever raised and translated here)."""


def _refuse_redirect(response: requests.Response, *args: object, **kwargs: object) -> None:
    if response.is_redirect:
        response.close()  # nothing of it is read: give its connection back
        raise _Redirected(response=response)


def _text(reference: SecretRef) -> str:
    """The credential a reference names, as text; never quoted in an error."""
    raw = reference.resolve()
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not text or not text.isprintable():
        raise SecretSourceError(f"{reference}: does not hold a Vault credential")
    return text
