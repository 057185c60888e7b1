"""``unlock`` and ``lock``: start the unlock agent for this config, and stop it.

``unlock`` unlocks the account here, in the foreground of the terminal (so
a passphrase prompt works as for any command), then hands the unlocked
stack to the agent: a forked child that leaves the terminal's session, or
this very process with ``--foreground``.  The parent wipes its own copy of
the keys before it exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from strongroom._stack import Strongroom
from strongroom.agent import _wire
from strongroom.agent.client import connected, lock_agents
from strongroom.agent.server import Agent, detach, listen, lock_memory, session_watch
from strongroom.cli._output import emit
from strongroom.cli._session import config_for
from strongroom.errors import ConfigError, StrongroomError


def unlock(args: argparse.Namespace) -> int:
    with connected(args.config, args.account) as running:
        if running is not None:
            state = next(running.request("state"))
            return _report(args, "already unlocked", state)
    config = config_for(args)
    ident = _wire.identity(args.config, args.account, os.environ, os.getcwd())
    if ident is None:
        raise ConfigError("cannot read the config file", source=config.source)
    directory = _wire.runtime_dir(os.environ)
    _wire.make_private_dir(directory)
    watch = session_watch()
    # the agent keeps its own idle deadline: no timer thread may outlive the fork
    stack = Strongroom(dataclasses.replace(config, idle_timeout=0))
    try:
        path = _wire.socket_path(directory, ident)
        if path is None:
            raise StrongroomError(f"{directory}: too long a path for the agent's socket")
        stack.keys.unlock()
        with _wire.locked_dir(directory):  # two unlocks at once start one agent
            with connected(args.config, args.account) as running:
                if running is not None:
                    stack.close()
                    return _report(args, "already unlocked", next(running.request("state")))
            listener = listen(path)
    except BaseException:
        stack.close()
        raise
    agent = Agent(stack, listener, path, ident, idle_timeout=config.idle_timeout, watch=watch)
    if args.foreground:
        agent.memory_locked = lock_memory()
        _report(args, "unlocked", agent.state())
        agent.serve()
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the agent
        code = 1
        try:
            detach()
            agent.memory_locked = lock_memory()
            agent.serve()
            code = 0
        finally:
            os._exit(code)
    listener.close()
    if watch is not None:
        os.close(watch)
    stack.close()  # this process's copy of the keys is wiped before it reports
    with connected(args.config, args.account) as running:  # answers once the agent serves
        if running is None:
            raise StrongroomError(f"the agent (pid {pid}) ended before it served")
        return _report(args, "unlocked", next(running.request("state")))


def lock(args: argparse.Namespace) -> int:
    """End every unlock agent of this user, whichever config or account it serves.

    An agent is found by its socket in the runtime directory, not by this
    command's config, so an edited config or other overrides cannot hide one.
    """
    locked = lock_agents()
    lines = [
        f"locked: agent {state['pid']} (account {state['account']}, {state['directory']}) "
        "wiped the keys and ended"
        for state in locked
    ]
    emit(args, {"locked": locked}, lines or ["no unlock agent was running"])
    return 0


def _report(args: argparse.Namespace, what: str, state: dict[str, object]) -> int:
    state = {key: value for key, value in state.items() if key not in ("body", "ok")}
    memory = "locked in RAM" if state["memory_locked"] else "not locked in RAM (RLIMIT_MEMLOCK)"
    emit(
        args,
        {"agent": state},
        [f"{what}: agent {state['pid']} holds account {state['account']} ({memory})"],
    )
    return 0
