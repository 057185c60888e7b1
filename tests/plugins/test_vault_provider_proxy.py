"""Plain HTTP to a loopback Vault never goes through a proxy named in the environment.

requests reads ``HTTP_PROXY`` (and ``ALL_PROXY``) and, without ``NO_PROXY``,
sends even a ``http://127.0.0.1`` request to that proxy, in clear: the token
and, for Transit ``encrypt``, the secret being wrapped would cross the network
although ``http://`` is only accepted because it stays on this host.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from vault_stub import Recording, serving

from strongroom.errors import ProviderUnreachableError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

TOKEN = "s.proxy-test-token"  # noqa: S105 - a stub's
SECRET = bytes(range(32))


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A recording proxy named in the environment, and no ``NO_PROXY``."""
    with serving(Recording) as (url, seen):
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, url)
        yield seen


def test_a_loopback_vault_is_reached_directly_never_through_a_proxy(proxy: list[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    token = SecretRef("env", "T", environ={"T": TOKEN})
    settings = VaultSettings(url=f"http://127.0.0.1:{port}", token=token, generation_mount="")
    with VaultProvider(settings) as provider, pytest.raises(ProviderUnreachableError):
        provider.wrap(SECRET, WrapContext("alice", "master", 1))
    assert proxy == []
