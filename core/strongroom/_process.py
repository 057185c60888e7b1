"""Process hardening for a process about to hold keys: no core dumps, no same-user ptrace.

A crashing process that has unwrapped a key writes the key, the passphrase
and whatever plaintext it held into its core file, and any process of the
same user can read its memory through ``ptrace`` or ``/proc/<pid>/mem``.
:func:`harden_process` closes both ways; the library never calls it on
import (it changes the whole process), the CLI calls it before every command.
"""

from __future__ import annotations

import os
import resource
import sys

#: From ``<linux/prctl.h>``.
PR_SET_DUMPABLE = 4


def harden_process() -> None:
    """Keep this process's memory out of core files and away from same-user debuggers.

    Call it before reading any secret.  Everywhere (POSIX), the core file
    size limit, soft and hard, is set to 0; the hard limit cannot be raised
    again without privilege, and children inherit it.  On Linux the process
    is also marked not dumpable (``prctl(PR_SET_DUMPABLE, 0)``): no core
    dump even when ``core_pattern`` pipes it to a crash collector (which
    ignores the size limit), ``/proc/<pid>/mem``, ``environ`` and friends
    readable by root only, and no ``ptrace`` attach by the same user.
    Elsewhere only the core limit applies.  Calling it again changes nothing.

    It does not stop root, a debugger attached before the call, swap, or a
    hibernation image; a program this process executes starts dumpable again.

    :raises OSError: the kernel refused a setting (the process is not hardened).
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_DUMPABLE, 0)


def _prctl(option: int, value: int) -> int:
    import ctypes  # only here: the CLI's cold start does not pay for it before a command runs

    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.prctl(option, value, 0, 0, 0))
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), "prctl")
    return result
