"""The middleware's worker threads (``strongroom_contrib._asgi_io.in_thread``).

Each test runs on a fresh event loop; the workers are shared by every loop
of the process, as in a server with one loop per worker process.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time

import pytest

from strongroom_contrib import _asgi_io
from strongroom_contrib._asgi_io import in_thread

REQUEST = contextvars.ContextVar("REQUEST", default="none")


def test_the_call_runs_off_the_loop_thread_and_its_result_comes_back() -> None:
    async def main() -> tuple[int, str]:
        return await in_thread(lambda a, *, b: (a + b, threading.current_thread().name), 2, b=3)

    total, thread = asyncio.run(main())
    assert (total, thread) == (5, "strongroom-asgi")


def test_the_call_sees_the_callers_context_and_cannot_change_it() -> None:
    def read_and_set() -> str:
        seen = REQUEST.get()
        REQUEST.set("changed in the worker")
        return seen

    async def main() -> tuple[str, str]:
        REQUEST.set("request 7")
        seen = await in_thread(read_and_set)
        return seen, REQUEST.get()

    assert asyncio.run(main()) == ("request 7", "request 7")


def test_an_exception_reaches_the_awaiting_task_and_the_worker_serves_on() -> None:
    def refuse() -> None:
        raise PermissionError("refused in the worker")

    def stop() -> None:
        raise StopIteration  # an asyncio future cannot hold this one

    async def main() -> int:
        with pytest.raises(PermissionError, match="refused in the worker"):
            await in_thread(refuse)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await in_thread(stop)
        return await in_thread(int, "41") + 1

    assert asyncio.run(main()) == 42


def test_a_cancelled_caller_leaves_the_workers_serving() -> None:
    started, release = threading.Event(), threading.Event()

    def blocked() -> str:
        started.set()
        release.wait(10)
        return "late"

    async def main() -> str:
        waiting = asyncio.create_task(in_thread(blocked))
        await asyncio.to_thread(started.wait, 10)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()  # the late result now finds its future cancelled
        return await in_thread(str, "served")

    assert asyncio.run(main()) == "served"


def test_a_result_for_a_closed_loop_is_dropped_without_harm() -> None:
    started, release = threading.Event(), threading.Event()
    workers: list[threading.Thread] = []

    def slow() -> int:
        workers.append(threading.current_thread())
        started.set()
        release.wait(10)
        return 1

    async def abandon() -> None:
        asyncio.get_running_loop().create_task(in_thread(slow))
        await asyncio.to_thread(started.wait, 10)

    asyncio.run(abandon())  # cancels the task and closes its loop with the call still running
    release.set()
    time.sleep(0.05)
    assert workers[0].is_alive()  # the thread outlived the result it could not deliver
    assert asyncio.run(in_thread(int, "7")) == 7


def test_threads_are_reused_and_never_more_than_the_limit() -> None:
    limit = _asgi_io._WORKERS._limit
    gate = threading.Barrier(2, timeout=10)
    names: set[int] = set()

    def pairwise() -> None:  # two at a time must run at once, whatever the limit
        names.add(threading.get_ident())
        gate.wait()

    async def main() -> None:
        await asyncio.gather(*(in_thread(pairwise) for _ in range(4 * limit)))

    before = {t.ident for t in threading.enumerate() if t.name == "strongroom-asgi"}
    asyncio.run(main())
    after = {t.ident for t in threading.enumerate() if t.name == "strongroom-asgi"}
    assert names <= after
    assert len(after) <= limit
    assert len(after - before) <= limit


def test_a_forked_child_starts_its_own_workers() -> None:
    asyncio.run(in_thread(int, "1"))  # the parent has a worker
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, reports by exit code
        code = 1
        try:
            code = 0 if asyncio.run(asyncio.wait_for(in_thread(int, "3"), 5)) == 3 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
