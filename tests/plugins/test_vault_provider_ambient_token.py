"""The provider sends only the credential its settings name, never hvac's ambient token.

Built without a token, an hvac client takes ``VAULT_TOKEN`` or
``~/.vault-token`` (the operator's own, often a powerful one, possibly for
another Vault) and sends it with every request it makes before logging in:
the AppRole login would carry it to the Vault in the provider's settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vault_stub import Recording, serving

from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

AMBIENT = "s.operators-own-token"


class _Vault(Recording):
    """Answers an AppRole login; keeps no generation."""

    def answer(self) -> tuple[int, dict[str, Any]]:
        if "generation" in self.path:
            return 404, {"errors": []}
        return 200, {"auth": {"client_token": "s.approle", "lease_duration": 0}}


@pytest.fixture
def vault() -> Iterator[tuple[str, list[str]]]:
    with serving(_Vault) as served:
        yield served


@pytest.mark.parametrize("where", ["env", "file"])
def test_an_approle_login_never_carries_the_ambient_token(
    vault: tuple[str, list[str]], where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = vault
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    if where == "env":
        monkeypatch.setenv("VAULT_TOKEN", AMBIENT)
    else:
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".vault-token").write_text(AMBIENT)
    environ = {"R": "role", "S": "secret"}
    settings = VaultSettings(
        url=url,
        role_id=SecretRef("env", "R", environ=environ),
        secret_id=SecretRef("env", "S", environ=environ),
    )
    with VaultProvider(settings) as provider:
        assert provider.recorded_generation("alice") is None
    assert any("approle/login" in request for request in seen)
    assert not any(AMBIENT in request for request in seen)
