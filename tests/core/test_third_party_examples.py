"""Third-party plugins written from the docs alone: a key provider and a hook plugin.

Both live in ``tests/fixtures/examples/`` and import nothing but the public
API (``tests/core/test_architecture.py`` checks that).  The provider passes
``KeyProviderContract``; both then run in a real stack, the provider
installed as a distribution with an entry point, as its author would ship it.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import MakeDistribution
from strongroom import KeyProvider, Strongroom, parse_config
from strongroom.errors import AuthenticationError, KeyLockedError
from strongroom.testing import KeyProviderContract

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "examples"
sys.path.insert(0, str(EXAMPLES))

from audit_to_list import AuditCollector  # noqa: E402 - from the examples directory
from env_key_provider import EnvKeyProvider  # noqa: E402

ROOT_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


class TestEnvKeyProvider(KeyProviderContract):
    refusal = AuthenticationError
    destroys_root = False  # the key lives in the environment: nothing to erase
    keeps_generation = False

    def make_provider(self) -> KeyProvider:
        return EnvKeyProvider(environ={EnvKeyProvider.VARIABLE: ROOT_KEY})

    def make_foreign_provider(self) -> KeyProvider:
        return EnvKeyProvider(environ={EnvKeyProvider.VARIABLE: OTHER_KEY})


@pytest.fixture
def installed(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "example-env-key",
        entry_points={"strongroom.key_providers": {"envkey": "env_key_provider:EnvKeyProvider"}},
        modules={"env_key_provider": (EXAMPLES / "env_key_provider.py").read_text()},
    )
    sys.modules.pop("env_key_provider", None)  # the installed copy, not the examples' one


def test_the_examples_run_in_a_stack(
    installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(
        {
            "strongroom": {"data_dir": str(tmp_path), "account": "alice"},
            "key_providers": {"env": {"use": "envkey"}},
        },
        source="example.toml",
        environ={},
    )
    collector = AuditCollector()
    monkeypatch.setenv("APP_ROOT_KEY", ROOT_KEY)
    with Strongroom(config, plugins=[collector]) as stack:
        stack.initialise()
        stack.store("default").put("k", b"value")
    monkeypatch.delenv("APP_ROOT_KEY")
    with Strongroom(config, plugins=[collector]) as stack:
        with pytest.raises(KeyLockedError, match="APP_ROOT_KEY is not set"):
            stack.keys.unlock()
        monkeypatch.setenv("APP_ROOT_KEY", OTHER_KEY)
        with pytest.raises(AuthenticationError):
            stack.keys.unlock()  # one provider: its own answer
        monkeypatch.setenv("APP_ROOT_KEY", ROOT_KEY)
        stack.keys.unlock()
        assert stack.store("default").get("k") == b"value"
    assert [(action, outcome) for action, outcome, _ in collector.events] == [
        ("account.created", "ok"),
        ("key.locked", "ok"),
        ("key.unlock", "failure"),
        ("key.unlock", "failure"),
        ("key.unlocked", "ok"),
        ("key.locked", "ok"),
    ]
    assert collector.events[0][2] == {"providers": "env"}
    assert collector.locks == ["close", "close"]
    assert ROOT_KEY not in repr(collector.events)
    assert os.environ["APP_ROOT_KEY"] == ROOT_KEY


@pytest.mark.parametrize(
    ("marker", "source"),
    [("class EnvKeyProvider", "env_key_provider.py"), ("class AuditCollector", "audit_to_list.py")],
)
def test_the_docs_quote_the_examples_as_they_are(marker: str, source: str) -> None:
    """docs/plugins.md shows excerpts: every line it shows is in the tested file."""
    guide = (EXAMPLES.parents[2] / "docs" / "plugins.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.*?)```", guide, re.S) if marker in block]
    assert len(blocks) == 1
    tested = {line.strip() for line in (EXAMPLES / source).read_text().splitlines()}
    shown = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    assert [line for line in shown if line not in tested] == []
