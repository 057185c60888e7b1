"""Unlock latency per key provider: a locked session to an unlocked one, median and p95.

Each provider wraps the master key of its own account; a round locks the session (untimed) and
unlocks it again (timed): the provider unwraps, and the key record is authenticated.  The services
are the tests' own, started here the same way (``tests/services.py``, ``tests/openbao.py``,
``tests/softhsm.py``): a private gnome-keyring on its own D-Bus, an OpenBao dev server on loopback,
a SoftHSM2 token.  The passphrase provider runs at its default Argon2id cost (64 MiB, 3 passes),
which is its floor by design.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import Sizes, pedantic
from strongroom.key_provider import KeyProvider
from strongroom.keys import AccountKeys
from strongroom.testing.store import suite_resolver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from openbao import ROOT_TOKEN, running_openbao  # type: ignore[import-not-found]
from services import running_gnome_keyring  # type: ignore[import-not-found]
from softhsm import softhsm_session  # type: ignore[import-not-found]

PROVIDERS = ("passphrase", "keyring", "vault", "pkcs11")
PASSPHRASE = "bench passphrase"  # noqa: S105 - the benchmark's own


@contextlib.contextmanager
def provider_for(name: str, work: pytest.TempPathFactory) -> Iterator[KeyProvider]:
    """The provider ``name`` against its real service, running for the block."""
    from strongroom.settings import SecretRef

    if name == "passphrase":
        from strongroom_plugins.providers.passphrase import PassphraseProvider

        yield PassphraseProvider(passphrase=lambda _request: PASSPHRASE)
    elif name == "keyring":
        from strongroom_plugins.providers.os_keyring import OsKeyringProvider

        with pytest.MonkeyPatch.context() as patch, running_gnome_keyring(patch):
            yield OsKeyringProvider()
    elif name == "vault":
        from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

        token = SecretRef("env", "BENCH_TOKEN", environ={"BENCH_TOKEN": ROOT_TOKEN})
        with running_openbao() as server:
            yield VaultProvider(VaultSettings(url=server.url, token=token))
    else:
        from strongroom_plugins.providers.pkcs11 import Pkcs11Provider, Pkcs11Settings

        hsm = softhsm_session(work)
        settings = Pkcs11Settings(library=hsm.library, token_label=hsm.token)
        yield Pkcs11Provider(settings, pin=lambda _request: hsm.pin)


@pytest.mark.parametrize("name", PROVIDERS)
def test_unlock(
    benchmark: BenchmarkFixture, sizes: Sizes, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    with provider_for(name, tmp_path_factory) as provider:
        keys = AccountKeys(
            account="bench",
            directory=tmp_path_factory.mktemp(name) / "keys",
            providers={name: provider},
            provider_backends={name: name},
            suite_for=suite_resolver(),
            default_suite="aes-256-gcm",
        )
        keys.create()
        benchmark.group = "unlock: locked session to unlocked"
        benchmark.extra_info.update(subject=name)
        rounds = sizes.unlock_rounds if name != "passphrase" else max(sizes.unlock_rounds // 5, 1)
        pedantic(benchmark, keys.unlock, setup=keys.lock, rounds=rounds)
        assert benchmark.stats is not None
        times = sorted(benchmark.stats.stats.data)
        benchmark.extra_info["p95_ms"] = 1000 * times[min(len(times) - 1, len(times) * 95 // 100)]
        benchmark.extra_info["median_ms"] = 1000 * statistics.median(times)
        keys.close()
        provider.close()
