"""Backends and hook plugins found through real entry points, and every way loading fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import MakeDistribution
from strongroom import Strongroom, hookimpl
from strongroom._loading import SLOTS_BY_TABLE, load_backend, load_hook_plugins, registrations
from strongroom.config import parse_config
from strongroom.errors import (
    BackendBlockedError,
    BackendNotFoundError,
    BackendUnavailableError,
    PluginError,
    PluginLoadError,
)

SUITES = SLOTS_BY_TABLE["cipher_suite"]
SUITE_GROUP = SUITES.group

ROT_SUITE = """
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

class Rot(Aes256Gcm):
    name = "rot"
    code = 0x8100
"""


def _stack(cipher_suite: str, **extra: object) -> Strongroom:
    return Strongroom(
        parse_config({"cipher_suite": {"use": cipher_suite}, **extra}, source="t.toml", environ={})
    )


def imported_after(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the backend modules it imported."""
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return {name for name in done.stdout.split() if name.startswith("strongroom_plugins.ciphers.")}


def test_discovery_reads_metadata_without_importing() -> None:
    found = {reg.name: reg for reg in registrations(SUITE_GROUP)}
    assert {"aes-256-gcm", "chacha20-poly1305", "xchacha20-poly1305"} <= set(found)
    assert found["xchacha20-poly1305"].extras == ("nacl",)
    assert found["aes-256-gcm"].distribution == "strongroom"
    code = (
        "from strongroom._loading import registrations\nregistrations('strongroom.cipher_suites')"
    )
    assert imported_after(code) == set()


def test_only_the_configured_backend_is_imported() -> None:
    code = (
        "from strongroom import Strongroom\n"
        "from strongroom.config import parse_config\n"
        "config = parse_config({'cipher_suite': {'use': 'chacha20-poly1305'}}, source='t')\n"
        "assert Strongroom(config).cipher_suite.name == 'chacha20-poly1305'"
    )
    assert imported_after(code) == {
        "strongroom_plugins.ciphers.chacha",
        "strongroom_plugins.ciphers._pyca",
    }


def test_unknown_backend_names_group_and_lists_the_available() -> None:
    with pytest.raises(BackendNotFoundError) as caught:
        load_backend(SUITES, "rot13")
    message = str(caught.value)
    assert "'rot13'" in message
    assert SUITE_GROUP in message
    assert "aes-256-gcm" in message
    assert caught.value.exit_code == 2


def test_missing_extra_is_named_with_the_install_command(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "needs-extra",
        entry_points={SUITE_GROUP: {"fancy": "fancy_suite:Fancy [turbo]"}},
        modules={"fancy_suite": "import not_installed_turbo_module\n"},
    )
    with pytest.raises(BackendUnavailableError) as caught:
        load_backend(SUITES, "fancy")
    message = str(caught.value)
    assert "'turbo' extra" in message
    assert "pip install 'needs-extra[turbo]'" in message
    assert "not_installed_turbo_module" in message


def test_missing_module_without_declared_extra_is_still_reported(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "no-extra",
        entry_points={SUITE_GROUP: {"plain": "plain_suite:Plain"}},
        modules={"plain_suite": "import not_installed_plain_module\n"},
    )
    with pytest.raises(BackendUnavailableError, match="not_installed_plain_module"):
        load_backend(SUITES, "plain")


def test_a_plugin_that_raises_on_import_is_reported_not_skipped(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "broken-plugin",
        entry_points={SUITE_GROUP: {"broken": "broken_suite:Broken"}},
        modules={"broken_suite": "raise RuntimeError('plugin bug')\n"},
    )
    with pytest.raises(PluginLoadError) as caught:
        load_backend(SUITES, "broken")
    assert "broken-plugin" in str(caught.value)
    assert "RuntimeError: plugin bug" in str(caught.value)
    with pytest.raises(PluginLoadError), _stack("broken") as stack:
        stack.resolve("cipher_suite")


def test_an_object_of_the_wrong_interface_is_refused(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "wrong-kind",
        entry_points={SUITE_GROUP: {"notasuite": "wrong_kind:NotASuite"}},
        modules={"wrong_kind": "class NotASuite:\n    pass\n"},
    )
    expected = r"not a subclass of strongroom\.cipher_suite\.CipherSuite"
    with pytest.raises(PluginError, match=expected):
        load_backend(SUITES, "notasuite")


def test_a_name_claimed_twice_is_refused(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "impostor",
        entry_points={SUITE_GROUP: {"aes-256-gcm": "rot_suite:Rot"}},
        modules={"rot_suite": ROT_SUITE},
    )
    with pytest.raises(PluginError, match="several distributions: impostor, strongroom"):
        load_backend(SUITES, "aes-256-gcm")


def test_third_party_backend_is_selectable_and_blockable(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "rot-plugin",
        entry_points={SUITE_GROUP: {"rot": "rot_suite:Rot"}},
        modules={"rot_suite": ROT_SUITE},
    )
    with _stack("rot") as stack:
        assert stack.cipher_suite.name == "rot"
        assert stack.resolve("cipher_suite").registration.distribution == "rot-plugin"
    for blocked in ("rot-plugin", "rot"):
        with (
            pytest.raises(BackendBlockedError, match="rot-plugin"),
            _stack("rot", plugins={"block": [blocked]}) as stack,
        ):
            stack.resolve("cipher_suite")


HOOK_PLUGIN = """
from strongroom import hookimpl

events = []

@hookimpl
def strongroom_configure(strongroom):
    events.append(("configure", strongroom.config.account))

@hookimpl
def strongroom_unconfigure(strongroom):
    events.append(("unconfigure", strongroom.config.account))
"""


def test_hook_plugins_autoload_and_hear_configure(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "audit-plugin",
        entry_points={"strongroom.plugins": {"audit": "audit_hooks"}},
        modules={"audit_hooks": HOOK_PLUGIN},
    )
    import audit_hooks  # type: ignore[import-not-found]

    with _stack("aes-256-gcm") as stack:
        assert [found.registration.name for found in stack.hook_plugins] == ["audit"]
        assert audit_hooks.events == [("configure", "default")]
    assert audit_hooks.events[-1] == ("unconfigure", "default")


@pytest.mark.parametrize(
    ("plugins_table", "env"),
    [
        ({"autoload": False}, {}),
        ({}, {"STRONGROOM_DISABLE_PLUGIN_AUTOLOAD": "1"}),
        ({"block": ["audit"]}, {}),
        ({"block": ["audit-plugin"]}, {}),
    ],
)
def test_hook_plugins_can_be_switched_off_or_blocked(
    make_distribution: MakeDistribution,
    monkeypatch: pytest.MonkeyPatch,
    plugins_table: dict[str, object],
    env: dict[str, str],
) -> None:
    make_distribution(
        "audit-plugin",
        entry_points={"strongroom.plugins": {"audit": "audit_hooks"}},
        modules={"audit_hooks": HOOK_PLUGIN},
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("audit_hooks", None)
    with _stack("aes-256-gcm", plugins=plugins_table) as stack:
        assert stack.plugin_manager.get_plugins() == set()
        if "block" in plugins_table:
            assert [found.blocked for found in stack.hook_plugins] == [True]
    assert "audit_hooks" not in sys.modules


def test_a_hook_plugin_that_raises_on_import_stops_the_build(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "bad-hooks",
        entry_points={"strongroom.plugins": {"bad": "bad_hooks"}},
        modules={"bad_hooks": "raise ImportError('half installed')\n"},
    )
    with pytest.raises(PluginLoadError, match=r"hook plugin .bad. .*half installed"):
        list(load_hook_plugins())


def test_explicit_plugins_are_registered_on_a_fresh_manager() -> None:
    heard: list[str] = []

    class Listener:
        @hookimpl
        def strongroom_key_rotated(
            self, account: str, purpose: str, old_version: int, new_version: int
        ) -> None:
            heard.append(f"{account}/{purpose}:{old_version}->{new_version}")

    with _stack("aes-256-gcm", plugins={"autoload": False}) as first:
        first.plugin_manager.register(Listener())
        first.hook.strongroom_key_rotated(
            account="default", purpose="files", old_version=1, new_version=2
        )
    with _stack("aes-256-gcm", plugins={"autoload": False}) as second:
        assert second.plugin_manager.get_plugins() == set()
    assert heard == ["default/files:1->2"]


PROVIDERS = SLOTS_BY_TABLE["key_providers"]
PROVIDER_WITHOUT_TRAITS = """
from strongroom import KeyProvider

class NoTraits(KeyProvider):
    def wrap(self, secret, context):
        return secret

    def unwrap(self, blob, context):
        return blob

    def destroy(self, account):
        pass
"""


def test_a_key_provider_without_traits_is_refused_when_it_loads(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "no-traits",
        entry_points={PROVIDERS.group: {"notraits": "no_traits:NoTraits"}},
        modules={"no_traits": PROVIDER_WITHOUT_TRAITS},
    )
    with pytest.raises(PluginError, match="declares no traits") as caught:
        load_backend(PROVIDERS, "notraits")
    assert caught.value.exit_code == 2
    config = {"key_providers": {"main": {"use": "notraits"}}}
    with (
        pytest.raises(PluginError, match="declares no traits"),
        _stack("aes-256-gcm", **config) as s,
    ):
        s.resolve("key_providers.main")


def test_a_backend_missing_an_abstract_method_is_refused_when_it_loads(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution(
        "half-suite",
        entry_points={SUITE_GROUP: {"half": "half_suite:Half"}},
        modules={
            "half_suite": "from strongroom import CipherSuite\n\nclass Half(CipherSuite):\n"
            "    name = 'half'\n"
        },
    )
    with pytest.raises(PluginError, match="does not implement keyed"):
        load_backend(SUITES, "half")
