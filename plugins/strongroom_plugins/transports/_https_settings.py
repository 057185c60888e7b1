"""Settings of the ``https`` transport, checked when the config is read.

The rules that keep the channel safe are refused here, naming the key,
rather than at the first request: the URL is an ``https://`` origin, every
pin parses, a host has a backup pin, and there is no switch that accepts
any certificate.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from strongroom.errors import ConfigError
from strongroom.pinning import PinPolicy, PinSet, pattern_error
from strongroom.pins import parse_pin
from strongroom.settings import BackendSettings

__all__ = ["HttpsSettings", "PinSetSettings", "origin_of", "policy_of"]

Mode = Literal["enforce", "report-only"]
_Seconds = Annotated[float, Meta(gt=0, le=3600)]


class PinSetSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[transport.pins."<host pattern>"]``: the keys one host pattern may present."""

    pins: Annotated[list[str], Meta(min_length=1, description="sha256/<base64> SPKI pins")]
    expires: datetime.date | None = None
    on_expiry: Annotated[
        Literal["fail", "allow"], Meta(description="after expires: refuse, or verify chain only")
    ] = "fail"
    #: ``None``: the transport's ``mode``.
    mode: Mode | None = None
    allow_single_pin: bool = False


class HttpsSettings(BackendSettings, frozen=True, kw_only=True):
    """Where the sync server is, what TLS it must offer, and which keys it may present."""

    url: Annotated[str, Meta(min_length=1, description="https:// origin of the sync server")]
    ca_bundle: Annotated[str, Meta(description="PEM file of the CAs to trust instead")] = ""
    min_tls: Literal["1.2", "1.3"] = "1.2"
    mode: Mode = "enforce"
    require_pins: bool = False
    pins: dict[str, PinSetSettings] = msgspec.field(default_factory=dict)
    connect_timeout: _Seconds = 10.0
    read_timeout: _Seconds = 30.0
    total_timeout: _Seconds = 60.0
    max_response_bytes: Annotated[int, Meta(ge=1, le=1 << 40)] = 64 * 1024 * 1024
    retries: Annotated[int, Meta(ge=0, le=10)] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        origin_of(self.url)
        for pattern, pin_set in self.pins.items():
            problem = pattern_error(pattern)
            if problem is not None:
                _refuse("pins", f"host pattern {pattern!r}: {problem}")
            digests = set()
            for index, pin in enumerate(pin_set.pins):
                try:
                    digests.add(parse_pin(pin))
                except ConfigError as exc:
                    _refuse("pins", f"pins for {pattern!r}, item {index + 1}: {exc}")
            if len(digests) < 2 and not pin_set.allow_single_pin:
                _refuse(
                    "pins",
                    f"pins for {pattern!r}: give at least two different pins (a backup key),"
                    " or set allow_single_pin = true",
                )


def origin_of(url: str) -> tuple[str, str, int]:
    """``(origin, host, port)`` of an ``https://host[:port]`` URL.

    :raises ValueError: (as a config error on ``url``) another scheme, a
        path other than ``/``, a query, fragment or credentials.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        _refuse("url", "not a URL; expected https://host[:port]")
    if parts.scheme.lower() != "https":
        _refuse("url", "only https:// is accepted; plain http:// and other schemes are refused")
    host = parts.hostname
    if not host:
        _refuse("url", "no host; expected https://host[:port]")
    if parts.username is not None or parts.password is not None:
        _refuse("url", "credentials never sit in the URL")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or "?" in url or "#" in url:
        _refuse(
            "url",
            "give an origin only (https://host[:port]); a path prefix goes in each request's"
            " path, which the request signature covers",
        )
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}", host, port


def policy_of(settings: HttpsSettings) -> PinPolicy:
    """The pin policy the settings describe (already validated)."""
    pin_sets = [
        PinSet(
            pattern=pattern,
            digests=frozenset(parse_pin(pin) for pin in pin_set.pins),
            expires=pin_set.expires,
            on_expiry=pin_set.on_expiry,
            report_only=(pin_set.mode or settings.mode) == "report-only",
        )
        for pattern, pin_set in settings.pins.items()
    ]
    return PinPolicy(pin_sets, require_pins=settings.require_pins)  # modes resolved per set


def _refuse(key: str, message: str) -> NoReturn:
    """Raise as msgspec does for one field, so the config error names the key."""
    raise ValueError(f"{message} - at `$.{key}`")
