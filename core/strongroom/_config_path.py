"""Which config file a command reads: cheap enough for the CLI's agent fast path.

Kept apart from :mod:`strongroom.config` so that a command served by the
unlock agent can find its config without importing the validation machinery.
"""

from __future__ import annotations

import os

from strongroom.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from collections.abc import Mapping

CONFIG_ENV = "STRONGROOM_CONFIG"
DEFAULT_FILE_NAME = "strongroom.toml"


def locate(path: str | os.PathLike[str] | None, environ: Mapping[str, str], cwd: str) -> str | None:
    """``--config``, else ``$STRONGROOM_CONFIG``, else ``./strongroom.toml``; None: built-in.

    :raises ConfigError: ``--config`` or the variable names a file that does not exist.
    """
    if path is not None:
        return _must_exist(os.fspath(path), "--config")
    if environ.get(CONFIG_ENV):
        return _must_exist(environ[CONFIG_ENV], f"${CONFIG_ENV}")
    default = os.path.join(cwd, DEFAULT_FILE_NAME)
    return default if os.path.isfile(default) else None


def _must_exist(path: str, named_by: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"config file named by {named_by} does not exist", source=path)
    return path
