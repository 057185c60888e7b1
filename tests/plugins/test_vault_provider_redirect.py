"""The ``vault`` provider never follows a redirect: the token and the master key stay put.

hvac follows redirects by default, and requests keeps the ``X-Vault-Token``
header (only ``Authorization`` is dropped across hosts) and, for a 307, the
body, which for Transit ``encrypt`` holds the secret being wrapped.  A Vault
(or anything answering at its URL) that redirects could so send both to
another host, over plain HTTP.  No real server is needed: a stub on loopback
redirects every request to a second stub that records what reaches it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from vault_stub import Recording, serving

from strongroom.errors import ProviderUnreachableError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

TOKEN = "s.redirect-test-token"  # noqa: S105 - a stub's
SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


def _redirector(target: str) -> type[Recording]:
    class Redirect(Recording):
        def _handle(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _handle

    return Redirect


@pytest.fixture
def redirected() -> Iterator[tuple[str, list[str]]]:
    """``(url of a server that redirects everything, what the redirect target saw)``."""
    with serving(Recording) as (target, seen):  # noqa: SIM117 - the front needs its URL
        # Another host name for the same loopback target: a cross-host redirect.
        with serving(_redirector(target.replace("127.0.0.1", "localhost"))) as (url, _):
            yield url, seen


def test_a_redirect_is_refused_and_nothing_reaches_its_target(
    redirected: tuple[str, list[str]],
) -> None:
    url, seen = redirected
    token = SecretRef("env", "T", environ={"T": TOKEN})
    with (
        VaultProvider(VaultSettings(url=url, token=token, generation_mount="")) as provider,
        pytest.raises(ProviderUnreachableError, match="redirect") as caught,
    ):
        provider.wrap(SECRET, CONTEXT)
    assert str(caught.value).startswith(f"Vault at {url} ")
    leaked = "\n".join(seen)
    assert TOKEN not in leaked
    assert base64.b64encode(SECRET).decode() not in leaked
    assert seen == []
