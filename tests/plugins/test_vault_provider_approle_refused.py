"""A refused AppRole login is a refused credential (exit 4), never a wrong wrap or a crash.

Vault answers a wrong or expired ``role_id``/``secret_id`` with HTTP 400, the
status Transit uses for a wrap that does not open: the login's refusal must
not reach the caller's translation of Transit's answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openbao import OpenBao, running_openbao
from strongroom.errors import UnlockFailedError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

CONTEXT = WrapContext("alice", "master", 1)
ALL = 'path "*" { capabilities = ["create", "read", "update", "delete", "list"] }'


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        admin = server.admin()
        admin.sys.enable_auth_method("approle")
        admin.sys.create_or_update_policy("all", ALL)
        admin.auth.approle.create_or_update_approle("app", token_policies=["all"])
        yield server


def _provider(bao: OpenBao, role_id: str, secret_id: str) -> VaultProvider:
    environ = {"R": role_id, "S": secret_id}
    return VaultProvider(
        VaultSettings(
            url=bao.url,
            role_id=SecretRef("env", "R", environ=environ),
            secret_id=SecretRef("env", "S", environ=environ),
        )
    )


@pytest.mark.parametrize("wrong", ["role_id", "secret_id"])
@pytest.mark.parametrize("operation", ["unwrap", "wrap", "recorded_generation"])
def test_a_wrong_approle_credential_is_a_refused_login(
    bao: OpenBao, wrong: str, operation: str
) -> None:
    admin = bao.admin()
    role_id = admin.auth.approle.read_role_id("app")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("app")["data"]["secret_id"]
    with _provider(bao, role_id, secret_id) as good:
        blob = good.wrap(bytes(32), CONTEXT)
    credentials = {"role_id": role_id, "secret_id": secret_id, wrong: "not-the-right-one"}
    calls = {
        "unwrap": lambda provider: provider.unwrap(blob, CONTEXT),
        "wrap": lambda provider: provider.wrap(bytes(32), CONTEXT),
        "recorded_generation": lambda provider: provider.recorded_generation("alice"),
    }
    with (
        _provider(bao, **credentials) as provider,
        pytest.raises(UnlockFailedError, match="refused the AppRole login"),
    ):
        calls[operation](provider)
