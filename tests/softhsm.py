"""SoftHSM2 for tests: a private token directory and ``SOFTHSM2_CONF`` per test session.

SoftHSM reads its configuration once, when a process first loads the
library, and python-pkcs11 keeps that load for the life of the process.  So
the configuration is made, and ``SOFTHSM2_CONF`` set, once per test session
before anything loads the library (:func:`softhsm_session` fails the test if
something already did), and every test shares it: tests keep apart by
using their own key labels.  The CLI tests run subprocesses, which load it
afresh with whatever ``SOFTHSM2_CONF`` they are given: :meth:`SoftHsm.removed_env`
points one at an empty token directory, as if the token were pulled out.

The Debian package comes from ``.ci/debian-packages`` (softhsm2); a missing
library or ``softhsm2-util`` fails the test rather than skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest

from strongroom_plugins.providers._pkcs11_token import TOKEN_LOCK, TokenLogin

LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "12345678"
PIN = "87654321"
#: The token the tests use, and another one: a different root for the same labels.
TOKEN = "strongroom-test"  # noqa: S105 - a token's label, not a secret
FOREIGN_TOKEN = "strongroom-other"  # noqa: S105
#: A token that no provider stays logged in to: a PIN is checked only by a process's first login.
PIN_TOKEN = "strongroom-pins"  # noqa: S105


@dataclass(frozen=True)
class SoftHsm:
    """The test session's SoftHSM: its configuration, tokens and PIN."""

    root: Path
    conf: Path
    library: str = LIBRARY
    token: str = TOKEN
    foreign_token: str = FOREIGN_TOKEN
    pin_token: str = PIN_TOKEN
    pin: str = PIN

    @property
    def env(self) -> dict[str, str]:
        """What a subprocess needs to see these tokens."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    def removed_env(self) -> dict[str, str]:
        """What a subprocess needs to see no token at all: an empty token directory."""
        empty = self.root / "empty"
        (empty / "tokens").mkdir(parents=True, exist_ok=True)
        conf = empty / "softhsm2.conf"
        conf.write_text(_conf(empty / "tokens"))
        return {"SOFTHSM2_CONF": str(conf)}

    def pin_file(self, directory: Path, pin: str | None = None) -> Path:
        """A private file holding ``pin`` (the right one by default), for ``pin = "file:..."``."""
        path = directory / f"pin-{uuid.uuid4().hex[:8]}"
        path.write_text(f"{self.pin if pin is None else pin}\n")
        path.chmod(0o600)
        return path

    @contextmanager
    def session(self, token: str | None = None) -> Iterator[pkcs11.Session]:
        """A logged-in session on ``token``, shared with providers as PKCS#11 requires."""
        login = TokenLogin(self.library, token or self.token)
        with TOKEN_LOCK:
            try:
                yield login.session(lambda: self.pin)
            finally:
                login.release()


#: The one SoftHSM of this test session, once made.
_MADE: list[SoftHsm] = []


def softhsm_session(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The test session's SoftHSM, made (its tokens initialised) on first use."""
    if _MADE:
        return _MADE[0]
    if not Path(LIBRARY).is_file() or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is not installed: run .ci/debian-packages as root")
    if LIBRARY in getattr(pkcs11, "_loaded", {}):
        pytest.fail("the SoftHSM library was loaded before the tests' SOFTHSM2_CONF was set")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(_conf(root / "tokens"))
    os.environ["SOFTHSM2_CONF"] = str(conf)  # for the rest of the session, before the load
    pins = ["--so-pin", SO_PIN, "--pin", PIN]
    for label in (TOKEN, FOREIGN_TOKEN, PIN_TOKEN):
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, *pins],
            check=True,
            capture_output=True,
            timeout=30,
        )
    _MADE.append(SoftHsm(root, conf))
    return _MADE[0]


def _conf(tokens: Path) -> str:
    return f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
