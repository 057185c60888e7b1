"""A process of its own that queues or sends outbox operations and is killed at a named point.

``python outbox_worker.py CONFIG enqueue NAME... LAST``: queues an
operation per NAME, printing each id once queued, then queues LAST with
``os.replace`` made to SIGKILL the process: killed inside the store's
atomic write.  ``python outbox_worker.py CONFIG drain N``: drains, and is
SIGKILLed as soon as the N-th request has been answered, before the
outbox has recorded it.
"""

from __future__ import annotations

import os
import signal
import sys

from strongroom import Strongroom, load_config
from strongroom.outbox import Outbox
from strongroom.transport import SyncRequest, SyncResponse


def operation(name: str) -> SyncRequest:
    return SyncRequest("POST", f"/v1/accounts/alice/ops/{name}", f"body of {name}".encode())


def killed(*_args: object, **_kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    config, mode, *names = sys.argv[1:]
    with Strongroom(load_config(config, environ={})) as stack:
        stack.keys.unlock()
        outbox = Outbox(stack.store("notes"), account=stack.config.account)
        if mode == "enqueue":
            *acknowledged, last = names
            for name in acknowledged:
                print(outbox.enqueue(operation(name)), flush=True)
            os.replace = killed
            outbox.enqueue(operation(last))
        else:
            answered = 0

            def send(request: SyncRequest) -> SyncResponse:
                nonlocal answered
                response = stack.send(request)
                answered += 1
                if answered == int(names[0]):
                    killed()
                return response

            outbox.drain(send)
    print("not killed", flush=True)


if __name__ == "__main__":
    main()
