"""The ``vault`` provider inside a stack: provider rotation without the master key, and audit.

A real OpenBao dev server serves the module.  Each stack wraps account
``alice``'s master key with Vault and a passphrase, and records its audit
events with the JSON-lines audit plugin, so what an operator's log shows
for a Vault unlock, a provider rotation and a Vault failure is checked as
written: the cause named, no token, no key.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from openbao import ROOT_TOKEN, OpenBao, running_openbao
from strongroom import Strongroom
from strongroom.config import BUILTIN_SOURCE, parse_config
from strongroom.errors import KeyUnavailableError
from strongroom_contrib.audit_log import JsonLinesAuditLog

PASSPHRASE = "a passphrase for the vault audit tests"  # noqa: S105 - a test's own
VALUE = b"a value kept under a Vault-wrapped master key"


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with running_openbao() as server:
        yield server


def make_stack(
    bao: OpenBao,
    root: Path,
    prefix: str,
    *,
    passphrase: bool = True,
    audit: Path,
    binding: str = "context",
) -> Strongroom:
    secret = root / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    providers: dict[str, Any] = {
        "vault": {
            "use": "vault",
            "url": bao.url,
            "token": "env:TOKEN",
            "key_prefix": prefix,
            "generation_path": f"gen/{prefix}",
            "binding": binding,
        }
    }
    if passphrase:
        providers["recovery"] = {
            "use": "passphrase",
            "memory_kib": 19456,
            "iterations": 2,
            "passphrase": f"file:{secret}",
        }
    data = {
        "strongroom": {"data_dir": str(root / "data"), "account": "alice"},
        "key_providers": providers,
        "stores": {"default": {"use": "files"}},
    }
    config = parse_config(data, source=BUILTIN_SOURCE, environ={"TOKEN": ROOT_TOKEN})
    return Strongroom(config, plugins=[JsonLinesAuditLog(audit)])


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rotation_unlock_and_failure_are_audited_without_secrets(
    bao: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"h{uuid.uuid4().hex[:10]}-"
    audit = tmp_path / "audit.jsonl"
    with make_stack(bao, tmp_path, prefix, audit=audit) as app:
        app.initialise()
        app.store("default").put("k", VALUE)
        master = bytes(app.keys._session.master_key().view())

    with make_stack(bao, tmp_path, prefix, passphrase=False, audit=audit) as app:
        assert app.keys.unlock() == "vault"

        def no_plaintext(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("provider rotation sent the master key to Vault")

        monkeypatch.setattr(hvac.api.secrets_engines.Transit, "encrypt_data", no_plaintext)
        app.keys.rewrap_for("vault")  # what `keys rotate --provider vault` calls
        monkeypatch.undo()
        assert app.store("default").get("k") == VALUE

    name = f"{prefix}alice"
    assert bao.admin().secrets.transit.read_key(name)["data"]["latest_version"] == 2
    transit = bao.admin().secrets.transit
    transit.update_key_configuration(name, deletion_allowed=True)
    transit.delete_key(name)
    vault_only = make_stack(bao, tmp_path, prefix, passphrase=False, audit=audit)
    with vault_only, pytest.raises(KeyUnavailableError):
        vault_only.keys.unlock()
    with make_stack(bao, tmp_path, prefix, audit=audit) as app:
        assert app.keys.unlock() == "recovery"  # the other provider still opens the account
        app.keys.rewrap_for("vault")  # what `strongroom recover --enrol vault` does
    with make_stack(bao, tmp_path, prefix, passphrase=False, audit=audit) as app:
        assert app.keys.unlock() == "vault"
        assert app.store("default").get("k") == VALUE

    events = audit_lines(audit)
    actions = [(e["action"], e["outcome"], e["details"].get("provider")) for e in events]
    assert ("key.unlocked", "ok", "vault") in actions
    assert ("provider.rewrapped", "ok", "vault") in actions
    assert ("key.unlocked", "ok", "recovery") in actions
    (failure,) = [e for e in events if e["outcome"] == "failure"]
    assert failure["action"] == "key.unlock"
    assert failure["details"]["error"] == "ProviderKeyLostError"
    assert failure["details"]["reason"].startswith("the provider's key is unusable: Transit key")
    assert "no longer exists (it was deleted)" in failure["details"]["reason"]
    text = audit.read_text()
    for secret in (ROOT_TOKEN, PASSPHRASE, master.hex(), VALUE.decode()):
        assert secret not in text


def test_an_associated_data_wrap_is_rotated_by_a_fresh_wrap(bao: OpenBao, tmp_path: Path) -> None:
    prefix = f"a{uuid.uuid4().hex[:10]}-"
    audit = tmp_path / "audit.jsonl"
    options: dict[str, Any] = {"audit": audit, "binding": "associated_data"}
    with make_stack(bao, tmp_path, prefix, **options) as app:
        app.initialise()
        app.store("default").put("k", VALUE)
    with make_stack(bao, tmp_path, prefix, passphrase=False, **options) as app:
        app.keys.unlock()
        app.keys.rewrap_for("vault")
    name = f"{prefix}alice"
    bao.admin().secrets.transit.update_key_configuration(name, min_decryption_version=2)
    with make_stack(bao, tmp_path, prefix, passphrase=False, **options) as app:
        assert app.keys.unlock() == "vault"  # the wrap is under version 2 now
        assert app.store("default").get("k") == VALUE
    assert ("provider.rewrapped", "vault") in [
        (e["action"], e["details"].get("provider")) for e in audit_lines(audit)
    ]


def test_unlock_latency_on_loopback(bao: OpenBao, tmp_path: Path) -> None:
    """A locked-to-unlocked session through Vault stays well under 20 ms on loopback."""
    prefix = f"l{uuid.uuid4().hex[:10]}-"
    audit = tmp_path / "audit.jsonl"
    with make_stack(bao, tmp_path, prefix, audit=audit) as app:
        app.initialise()
    with make_stack(bao, tmp_path, prefix, passphrase=False, audit=audit) as app:
        app.keys.unlock()  # the first unlock logs in
        timings = []
        for _ in range(30):
            app.keys.lock()
            started = time.perf_counter()
            app.keys.unlock()
            timings.append(time.perf_counter() - started)
    timings.sort()
    median, p95 = timings[len(timings) // 2], timings[int(len(timings) * 0.95)]
    print(f"vault unlock: median {median * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms")
    assert median < 0.020, timings
