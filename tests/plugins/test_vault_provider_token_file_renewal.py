"""A token file's token refused at renewal is read again from the file, as on any request.

A Vault Agent sink replaces the token in the file when it re-authenticates and
the old one is revoked.  When the provider's next step is renewing the old
token (its TTL fell below ``renew_below_s``), that refusal must send it back
to the file like any refused request, not leave the provider failing for
good with a fresh token sitting in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openbao import OpenBao, running_openbao
from strongroom.key_provider import WrapContext
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

CONTEXT = WrapContext("alice", "master", 1)
SECRET = bytes(range(32))


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        yield server


def test_a_token_refused_at_renewal_is_read_again_from_its_file(
    bao: OpenBao, tmp_path: Path
) -> None:
    first = bao.token(ttl="1h", renewable=True)
    second = bao.token(ttl="1h", renewable=True)
    path = tmp_path / "token"
    path.write_text(first + "\n")
    path.chmod(0o600)
    settings = VaultSettings(url=bao.url, token_file=str(path), renew_below_s=7200)
    with VaultProvider(settings) as provider:
        blob = provider.wrap(SECRET, CONTEXT)  # TTL 1 h < 2 h: the next request renews first
        bao.admin().auth.token.revoke(first)
        path.write_text(second)  # what a Vault Agent sink does when it re-authenticates
        assert provider.unwrap(blob, CONTEXT) == SECRET
        assert provider.unwrap(blob, CONTEXT) == SECRET
