"""Building ``https`` transports against the servers of ``tests/tls_servers.py``."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strongroom import Strongroom
from strongroom.config import parse_config
from strongroom.transport import SyncRequest, TransportBinding
from strongroom_plugins.transports._https_settings import HttpsSettings
from strongroom_plugins.transports.https import HttpsTransport
from tls_servers import Pki, http_response

GET = SyncRequest("GET", "/v1/items?since=5")


def https(
    url: str, pki: Pki | None, *, binding: TransportBinding | None = None, **table: Any
) -> HttpsTransport:
    """A transport for ``url`` trusting ``pki``'s root (or the system store with None)."""
    settings = {"url": url, **table}
    if pki is not None:
        settings.setdefault("ca_bundle", str(pki.ca_bundle))
    return HttpsTransport(HttpsSettings.from_table(settings), binding=binding)


def stack_with_transport(
    root: Path, table: dict[str, Any], plugins: Sequence[object] = ()
) -> Strongroom:
    """A stack for account ``alice`` under ``root``: ``[transport]`` is ``https`` with ``table``."""
    data = {
        "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
        "transport": {"use": "https", **table},
    }
    config = parse_config(data, source=str(root / "strongroom.toml"), environ={})
    return Strongroom(config, plugins=plugins)


def resolve_transport(root: Path, table: dict[str, Any]) -> HttpsSettings:
    """Validate ``table`` as a config's ``[transport]`` would be."""
    with stack_with_transport(root, table) as stack:
        settings = stack.resolve("transport").settings
        assert isinstance(settings, HttpsSettings)
        return settings


def pins(host: str, *pins: str, **options: Any) -> dict[str, Any]:
    """A ``pins`` table: ``host`` pinned to ``pins`` (one pin is allowed here)."""
    return {host: {"pins": list(pins), "allow_single_pin": len(pins) < 2, **options}}


def ok(request: bytes) -> bytes:
    """A recording server's answer to anything."""
    return http_response(200, b"ok")


def tls_range(low: ssl.TLSVersion, high: ssl.TLSVersion) -> Any:
    """``configure`` for a recording server offering only TLS ``low`` .. ``high``."""

    def configure(context: ssl.SSLContext) -> None:
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = low
            context.maximum_version = high
        context.set_ciphers("DEFAULT:@SECLEVEL=0")

    return configure
