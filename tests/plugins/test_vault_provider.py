"""The ``vault`` key provider against a real OpenBao dev server started by the tests.

One server serves the module (``bao``); each test uses its own Transit key
prefix and generation path, so tests never see each other's keys.  Tests
that seal or stop a server start their own.  What Vault holds is checked
from outside with an administrator's hvac client (``bao.admin()``).
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import pytest

import strongroom_plugins.providers.vault as vault_module
from openbao import ROOT_TOKEN, OpenBao, running_openbao
from strongroom.config import parse_config
from strongroom.errors import (
    AuthenticationError,
    ConfigError,
    IntegrityError,
    KeyUnavailableError,
    ProviderKeyLostError,
    ProviderUnreachableError,
    UnlockFailedError,
)
from strongroom.key_provider import KeyProvider, WrapContext
from strongroom.settings import SecretRef
from strongroom.testing import KeyProviderContract
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        yield server


def token_ref(token: str) -> SecretRef:
    return SecretRef("env", "VAULT_TEST_TOKEN", environ={"VAULT_TEST_TOKEN": token})


def settings(bao: OpenBao, **changes: Any) -> VaultSettings:
    """Settings on a fresh key prefix and generation path, with the root token unless given."""
    unique = uuid.uuid4().hex[:10]
    options: dict[str, Any] = {
        "url": bao.url,
        "key_prefix": f"t{unique}-",
        "generation_path": f"gen-{unique}",
    }
    if not {"token", "token_file", "role_id"} & changes.keys():
        options["token"] = token_ref(ROOT_TOKEN)
    return VaultSettings(**{**options, **changes})


def transit_key(bao: OpenBao, name: str) -> dict[str, Any]:
    data: dict[str, Any] = bao.admin().secrets.transit.read_key(name)["data"]
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- the contract, in both bindings ---------------------------------------------------------


class TestContextBinding(KeyProviderContract):
    binding = "context"

    @pytest.fixture
    def provider(self, bao: OpenBao) -> Iterator[KeyProvider]:
        with VaultProvider(settings(bao, binding=self.binding)) as provider:
            yield provider

    @pytest.fixture
    def foreign(self, bao: OpenBao) -> Iterator[KeyProvider]:
        """Another Transit key for the same account: another root."""
        with VaultProvider(settings(bao, binding=self.binding)) as provider:
            yield provider


class TestAssociatedDataBinding(TestContextBinding):
    binding = "associated_data"


# -- what Vault holds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("binding", "field", "code"),
    [("context", "context", 1), ("associated_data", "associated_data", 2)],
)
def test_the_key_stays_in_vault_and_the_context_is_bound_as_configured(
    bao: OpenBao, binding: str, field: str, code: int
) -> None:
    with VaultProvider(settings(bao, binding=binding)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        name = provider.key_name("alice")
    key = transit_key(bao, name)
    assert key["type"] == "aes256-gcm96"
    assert key["exportable"] is False
    assert key["derived"] is (binding == "context")
    assert blob[:6] == b"SRVT\x01" + bytes([code])
    # Transit itself opens it only with the context in the configured field.
    ciphertext = f"vault:v1:{b64(blob[10:])}"
    transit = bao.admin().secrets.transit
    opened = transit.decrypt_data(name, ciphertext=ciphertext, **{field: b64(CONTEXT.encode())})
    assert base64.b64decode(opened["data"]["plaintext"]) == SECRET
    other = WrapContext("alice", "master", 2).encode()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit.decrypt_data(name, ciphertext=ciphertext, **{field: b64(other)})


@pytest.mark.parametrize(
    ("binding", "create", "problem"),
    [
        ("context", {}, "is not derived"),
        ("associated_data", {"derived": True}, "is derived"),
        ("context", {"derived": True, "exportable": True}, "is exportable"),
        (
            "context",
            {"derived": True, "key_type": "aes256-gcm96", "convergent_encryption": True},
            "",
        ),
    ],
)
def test_a_key_that_would_drop_the_binding_or_leave_vault_is_refused(
    bao: OpenBao, binding: str, create: dict[str, Any], problem: str
) -> None:
    with VaultProvider(settings(bao, binding=binding)) as provider:
        bao.admin().secrets.transit.create_key(provider.key_name("alice"), **create)
        if not problem:  # a derived key of the right kind is used as it is
            assert provider.unwrap(provider.wrap(SECRET, CONTEXT), CONTEXT) == SECRET
            return
        with pytest.raises(KeyUnavailableError, match=problem):
            provider.wrap(SECRET, CONTEXT)


def test_the_blob_header_is_checked_before_vault_is_asked(bao: OpenBao) -> None:
    with VaultProvider(settings(bao)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        for index in (5, 6, 9):  # binding, and the key version's high and low bytes
            altered = bytearray(blob)
            altered[index] ^= 0x01
            with pytest.raises((IntegrityError, AuthenticationError)):
                provider.unwrap(bytes(altered), CONTEXT)
        zero_version = blob[:6] + bytes(4) + blob[10:]
        with pytest.raises(IntegrityError, match="unknown binding or key version"):
            provider.unwrap(zero_version, CONTEXT)


# -- provider rotation ------------------------------------------------------------------------


def test_rotation_rewraps_inside_vault_and_min_decryption_version_is_honoured(
    bao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VaultProvider(settings(bao)) as provider:
        name = provider.key_name("alice")
        old = provider.wrap(SECRET, CONTEXT)

        def no_plaintext(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("rotation sent a plaintext to Vault")

        monkeypatch.setattr(hvac.api.secrets_engines.Transit, "encrypt_data", no_plaintext)
        monkeypatch.setattr(hvac.api.secrets_engines.Transit, "decrypt_data", no_plaintext)
        new = provider.rotate_root(old, CONTEXT)
        monkeypatch.undo()
        assert new is not None
        assert new[6:10] == (2).to_bytes(4, "big")
        assert transit_key(bao, name)["latest_version"] == 2
        assert provider.unwrap(new, CONTEXT) == SECRET
        assert provider.unwrap(old, CONTEXT) == SECRET  # until the operator retires version 1

        bao.admin().secrets.transit.update_key_configuration(name, min_decryption_version=2)
        assert provider.unwrap(new, CONTEXT) == SECRET
        with pytest.raises(KeyUnavailableError) as caught:
            provider.unwrap(old, CONTEXT)
        assert not isinstance(caught.value, (UnlockFailedError, AuthenticationError))
        message = str(caught.value)
        assert message.startswith("the provider's key is unusable: ")
        assert "no longer decrypts its version 1 (min_decryption_version" in message
        assert isinstance(caught.value, ProviderKeyLostError)
        assert message.endswith("unlock with another provider of the account")
        assert provider.rotate_root(old, CONTEXT) is None  # a lost root: the hierarchy wraps afresh
        with pytest.raises(AuthenticationError):
            provider.rotate_root(new, WrapContext("alice", "master", 2))


def test_an_associated_data_wrap_is_rotated_then_left_to_a_fresh_wrap(bao: OpenBao) -> None:
    with VaultProvider(settings(bao, binding="associated_data")) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        assert provider.rotate_root(blob, CONTEXT) is None  # Transit's rewrap takes no AD
        assert transit_key(bao, provider.key_name("alice"))["latest_version"] == 1
        fresh = provider.rewrap(SECRET, CONTEXT)  # what the key hierarchy calls instead
        assert transit_key(bao, provider.key_name("alice"))["latest_version"] == 2
        assert fresh[6:10] == (2).to_bytes(4, "big")
        assert provider.unwrap(fresh, CONTEXT) == SECRET


# -- authentication ----------------------------------------------------------------------------


def test_a_token_file_is_read_again_when_its_token_is_refused(bao: OpenBao, tmp_path: Any) -> None:
    first, second = bao.token(), bao.token()
    path = tmp_path / "token"
    path.write_text(first + "\n")
    path.chmod(0o600)
    with VaultProvider(settings(bao, token_file=str(path))) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        bao.admin().auth.token.revoke(first)
        path.write_text(second)  # what a Vault Agent sink does when it re-authenticates
        assert provider.unwrap(blob, CONTEXT) == SECRET
        bao.admin().auth.token.revoke(second)
        with pytest.raises(UnlockFailedError, match="refused the token"):
            provider.unwrap(blob, CONTEXT)
    path.chmod(0o644)
    with (
        VaultProvider(settings(bao, token_file=str(path))) as provider,
        pytest.raises(Exception, match="accessible to group or others"),
    ):
        provider.unwrap(blob, CONTEXT)


def least_privilege_policy() -> str:
    """The policy documented in the provider's module docstring, for prefix ``strongroom-``."""
    doc = vault_module.__doc__ or ""
    return "\n".join(line.strip() for line in doc.splitlines() if line.strip().startswith("path "))


@pytest.fixture(scope="module")
def approle(bao: OpenBao) -> tuple[str, str]:
    """An AppRole login under the documented policy: ``(role_id, secret_id)``."""
    admin = bao.admin()
    admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy("strongroom", least_privilege_policy())
    admin.auth.approle.create_or_update_approle(
        "app",
        token_policies=["strongroom"],
        token_ttl="1h",  # noqa: S106 - a lifetime, not a password
        token_max_ttl="4h",  # noqa: S106
    )
    role_id = admin.auth.approle.read_role_id("app")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("app")["data"]["secret_id"]
    return role_id, secret_id


def test_approle_under_the_documented_least_privilege_policy(
    bao: OpenBao, approle: tuple[str, str]
) -> None:
    role_id, secret_id = approle
    environ = {"ROLE": role_id, "SECRET": secret_id}
    login = {
        "role_id": SecretRef("env", "ROLE", environ=environ),
        "secret_id": SecretRef("env", "SECRET", environ=environ),
    }
    documented = {"key_prefix": "strongroom-", "generation_path": "strongroom/generation"}
    with VaultProvider(settings(bao, **login, **documented)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        assert provider.unwrap(blob, CONTEXT) == SECRET
        rotated = provider.rotate_root(blob, CONTEXT)
        assert rotated is not None
        assert provider.unwrap(rotated, CONTEXT) == SECRET
        provider.record_generation("alice", 4)
        assert provider.recorded_generation("alice") == 4
        provider.destroy("alice")
        assert provider.recorded_generation("alice") is None
        with pytest.raises(KeyUnavailableError, match="no longer exists"):
            provider.unwrap(rotated, CONTEXT)
    # The policy confines the role to its prefix.
    outside = VaultProvider(settings(bao, **login))
    with outside, pytest.raises(UnlockFailedError, match="permission denied"):
        outside.wrap(SECRET, CONTEXT)


def test_an_approle_token_that_cannot_be_renewed_is_replaced_by_a_new_login(
    bao: OpenBao, approle: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = bao.admin()
    batch = {"token_type": "batch", "token_ttl": "1h"}  # batch tokens never renew
    admin.auth.approle.create_or_update_approle("batch", token_policies=["strongroom"], **batch)
    environ = {
        "ROLE": admin.auth.approle.read_role_id("batch")["data"]["role_id"],
        "SECRET": admin.auth.approle.generate_secret_id("batch")["data"]["secret_id"],
    }
    login = {
        "role_id": SecretRef("env", "ROLE", environ=environ),
        "secret_id": SecretRef("env", "SECRET", environ=environ),
        "key_prefix": "strongroom-",
        "generation_path": "strongroom/generation",
    }
    logins: list[str] = []
    original = hvac.api.auth_methods.AppRole.login

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        logins.append("login")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hvac.api.auth_methods.AppRole, "login", counted)
    for renew_below_s, expected in ((7200, 3), (60, 1)):  # a batch token lives 1 h, never renews
        logins.clear()
        with VaultProvider(settings(bao, renew_below_s=renew_below_s, **login)) as provider:
            for _ in range(3):
                assert provider.recorded_generation("nobody") is None
        assert len(logins) == expected


def test_a_renewable_token_is_renewed_when_its_ttl_runs_low(bao: OpenBao) -> None:
    token = bao.token(ttl="1h", renewable=True)
    admin = bao.admin()
    with VaultProvider(settings(bao, token=token_ref(token), renew_below_s=7200)) as provider:
        provider.recorded_generation("alice")  # one request: login learns a TTL of 1 h < 2 h
        assert admin.auth.token.lookup(token)["data"].get("last_renewal_time") is None
        provider.recorded_generation("alice")  # the next request renews first
        assert admin.auth.token.lookup(token)["data"].get("last_renewal_time")
    quiet = bao.token(ttl="1h", renewable=True)
    with VaultProvider(settings(bao, token=token_ref(quiet), renew_below_s=60)) as provider:
        provider.wrap(SECRET, CONTEXT)
        provider.wrap(SECRET, CONTEXT)
        assert admin.auth.token.lookup(quiet)["data"].get("last_renewal_time") is None
    fixed = bao.token(ttl="1h", renewable=False)
    with VaultProvider(settings(bao, token=token_ref(fixed), renew_below_s=7200)) as provider:
        provider.wrap(SECRET, CONTEXT)
        provider.wrap(SECRET, CONTEXT)  # not renewable: used as it is, until it expires


# -- failures, each one line naming the cause -----------------------------------------------


def test_a_revoked_token_is_refused_as_such(bao: OpenBao) -> None:
    token = bao.token()
    with VaultProvider(settings(bao, token=token_ref(token))) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        bao.admin().auth.token.revoke(token)
        with pytest.raises(UnlockFailedError) as caught:
            provider.unwrap(blob, CONTEXT)
    message = str(caught.value)
    assert message == (
        f"Vault at {bao.url} refused the token (permission denied) for Transit decrypt on "
        f"{provider.key_name('alice')!r}: it was revoked or has expired, or its policy does "
        "not allow this"
    )


def test_a_deleted_transit_key_is_reported_as_unusable_not_as_a_wrong_secret(
    bao: OpenBao,
) -> None:
    with VaultProvider(settings(bao)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        name = provider.key_name("alice")
        admin = bao.admin().secrets.transit
        admin.update_key_configuration(name, deletion_allowed=True)
        admin.delete_key(name)
        with pytest.raises(KeyUnavailableError) as caught:
            provider.unwrap(blob, CONTEXT)
    assert type(caught.value) is ProviderKeyLostError
    assert str(caught.value) == (
        f"the provider's key is unusable: Transit key transit/{name} on Vault at {bao.url} no "
        "longer exists (it was deleted), so this wrap cannot be opened through it; unlock with "
        "another provider of the account"
    )


def test_a_lost_root_is_re_enrolled_by_a_fresh_wrap(bao: OpenBao) -> None:
    """What ``strongroom recover --enrol vault`` does once the Transit key was deleted."""
    with VaultProvider(settings(bao)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        name = provider.key_name("alice")
        transit = bao.admin().secrets.transit
        transit.update_key_configuration(name, deletion_allowed=True)
        transit.delete_key(name)
        assert provider.rotate_root(blob, CONTEXT) is None
        fresh = provider.rewrap(SECRET, CONTEXT)
        assert transit_key(bao, name)["latest_version"] == 1  # a new key, not rotated
        assert provider.unwrap(fresh, CONTEXT) == SECRET
        with pytest.raises(AuthenticationError):
            provider.unwrap(blob, CONTEXT)  # the old wrap stays shredded


def test_a_missing_transit_engine_is_named(bao: OpenBao) -> None:
    provider = VaultProvider(settings(bao, mount="no-such-transit"))
    with provider, pytest.raises(KeyUnavailableError, match="has no Transit engine at mount"):
        provider.wrap(SECRET, CONTEXT)


def test_a_closed_port_and_a_silent_one_are_unreachable(bao: OpenBao) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = VaultProvider(VaultSettings(url=f"http://127.0.0.1:{port}", token=token_ref("t")))
    with refused, pytest.raises(ProviderUnreachableError) as caught:
        refused.unwrap(b"SRVT\x01\x01\x00\x00\x00\x01" + bytes(40), CONTEXT)
    assert (
        str(caught.value) == f"Vault at http://127.0.0.1:{port} is unreachable (connection refused)"
    )
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections in the kernel, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        mute = VaultProvider(VaultSettings(url=url, token=token_ref("t"), timeout_s=0.2))
        with mute, pytest.raises(ProviderUnreachableError, match=r"did not answer within 0\.2 s"):
            mute.wrap(SECRET, CONTEXT)


def test_tls_is_verified_against_the_configured_ca_bundle(tmp_path: Any) -> None:
    with running_openbao(tls=True) as own:
        assert own.url.startswith("https://")
        with VaultProvider(settings(own, ca_bundle=str(own.ca_bundle))) as provider:
            assert provider.unwrap(provider.wrap(SECRET, CONTEXT), CONTEXT) == SECRET
        for ca_bundle, cause in (
            ("", "TLS verification failed; set ca_bundle to the CA that signed its certificate"),
            (str(tmp_path / "absent.pem"), "is not a file; TLS cannot be verified"),
        ):
            untrusted = VaultProvider(settings(own, ca_bundle=ca_bundle))
            with untrusted, pytest.raises(ProviderUnreachableError) as caught:
                untrusted.wrap(SECRET, CONTEXT)
            assert str(caught.value).startswith(f"Vault at {own.url}: ")
            assert str(caught.value).endswith(cause)


def test_a_sealed_vault_is_named() -> None:
    with running_openbao() as own, VaultProvider(settings(own)) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        own.seal()
        with pytest.raises(ProviderUnreachableError) as caught:
            provider.unwrap(blob, CONTEXT)
        assert str(caught.value) == (
            f"Vault at {own.url} is sealed; unseal it, or unlock with another provider"
        )
        with pytest.raises(KeyUnavailableError):
            provider.recorded_generation("alice")


# -- secrets stay out of sight ----------------------------------------------------------------


def test_no_token_or_key_reaches_a_log_an_error_or_a_repr(
    bao: OpenBao, caplog: pytest.LogCaptureFixture
) -> None:
    token = bao.token()
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    with VaultProvider(settings(bao, token=token_ref(token))) as provider:
        blob = provider.wrap(SECRET, CONTEXT)
        shown += [repr(provider), str(provider), repr(provider.settings)]
        for revoke in (False, True):
            if revoke:
                bao.admin().auth.token.revoke(token)
            with pytest.raises((AuthenticationError, UnlockFailedError)) as caught:
                provider.unwrap(blob, CONTEXT if revoke else WrapContext("alice", "master", 9))
            error: BaseException | None = caught.value
            while error is not None:  # the whole chain, hvac's own errors included
                shown.append(f"{error!r} {error}")
                error = error.__cause__ or error.__context__
    seen = "\n".join([*shown, caplog.text])
    for secret in (token, ROOT_TOKEN, SECRET.hex(), b64(SECRET)):
        assert secret not in seen


# -- settings -----------------------------------------------------------------------------------


def config_error(table: dict[str, Any]) -> str:
    data = {
        "strongroom": {"account": "alice", "data_dir": "/tmp/unused"},
        "key_providers": {"vault": {"use": "vault", "token": "env:VAULT_TOKEN", **table}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="test.toml", environ={}).choice("key_providers.vault").validate(
            VaultSettings
        )
    return str(caught.value)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"url": "http://vault.example.com:8200"},
            "[key_providers.vault] key 'url': plain http:// is refused except to loopback; "
            "use https://",
        ),
        (
            {"url": "https://user:pw@vault.example.com"},
            "[key_providers.vault] key 'url': credentials never sit in the URL",
        ),
        ({"url": "ftp://vault"}, "[key_providers.vault] key 'url': expected an https:// URL"),
        (
            {"url": "https://v", "role_id": "env:R", "secret_id": "env:S"},
            "[key_providers.vault] key 'token': set exactly one of",
        ),
        ({"url": "https://v", "binding": "plain"}, "[key_providers.vault] key 'binding'"),
    ],
)
def test_settings_refuse_plain_http_and_ambiguous_credentials(
    table: dict[str, Any], expected: str
) -> None:
    message = config_error(table)
    assert expected in message
    assert "pw" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8200",
        "http://localhost:1",
        "http://[::1]:8200",
        "https://vault.example.com",
    ],
)
def test_settings_accept_https_and_loopback_http(url: str) -> None:
    assert VaultSettings(url=url, token=token_ref("t")).url == url


def test_the_entry_point_loads_the_provider() -> None:
    from importlib.metadata import entry_points

    (point,) = entry_points(group="strongroom.key_providers", name="vault")
    assert point.load() is VaultProvider
    assert re.search(r"\[vault\]", point.value)
