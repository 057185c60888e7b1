"""Settings of the ``vault`` key provider, checked when the config is read.

Kept apart from the provider so the rules (TLS only, one way to
authenticate, no credentials in the URL) read in one place and fail at
config time, naming the key, rather than at the first request.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from msgspec import Meta

from strongroom.settings import BackendSettings, SecretRef

__all__ = ["Binding", "VaultSettings", "is_loopback"]

#: How the wrap context is bound: as a derived key's ``context`` or as GCM ``associated_data``.
Binding = Literal["context", "associated_data"]

_Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$", max_length=128)]


class VaultSettings(BackendSettings, frozen=True, kw_only=True):
    """Where the Transit engine is, how to authenticate, and how wraps are bound."""

    url: Annotated[str, Meta(min_length=1, description="https:// URL of Vault or OpenBao")]
    mount: Annotated[_Name, Meta(description="Transit engine's mount path")] = "transit"
    key_prefix: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_.@-]*$", max_length=64, description="Transit key name")
    ] = "strongroom-"
    binding: Annotated[Binding, Meta(description="context (derived key) or associated_data")] = (
        "context"
    )
    token: SecretRef | None = None
    token_file: Annotated[str, Meta(description="file holding the token, re-read when refused")] = (
        ""
    )
    role_id: SecretRef | None = None
    secret_id: SecretRef | None = None
    approle_mount: _Name = "approle"
    ca_bundle: Annotated[str, Meta(description="PEM file of the CAs to trust")] = ""
    namespace: str = ""
    timeout_s: Annotated[float, Meta(gt=0, le=300, description="seconds per request")] = 5.0
    renew_below_s: Annotated[
        float, Meta(ge=0, description="renew the token when its TTL falls below this")
    ] = 300.0
    generation_mount: Annotated[str, Meta(description="KV v2 mount; empty keeps none")] = "secret"
    generation_path: _Name = "strongroom/generation"

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = urlsplit(self.url)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            _refuse("url", "expected an https:// URL")
        if parts.username is not None or parts.password is not None:
            _refuse("url", "credentials never sit in the URL; use token, token_file or AppRole")
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            _refuse("url", "plain http:// is refused except to loopback; use https://")
        ways = [bool(self.token), bool(self.token_file), bool(self.role_id or self.secret_id)]
        if sum(ways) != 1:
            _refuse("token", "set exactly one of token, token_file, or role_id with secret_id")
        if (self.role_id is None) != (self.secret_id is None):
            _refuse("secret_id" if self.secret_id is None else "role_id", "AppRole needs both")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: the only hosts plain HTTP may reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(key: str, message: str) -> None:
    """Raise as msgspec does for one field, so the config error names the key."""
    raise ValueError(f"{message} - at `$.{key}`")
