"""An application hands providers their secret in process, and each operation asks once."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest

from accounts import default_stack_config
from strongroom import Strongroom
from strongroom.errors import KeyLockedError, UnlockFailedError, UsageError
from strongroom.key_provider import SecretRequest, WrapContext
from strongroom.secret import Secret
from strongroom.testing import MemoryKeyProvider
from strongroom_plugins.providers.passphrase import PassphraseProvider

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test secret


class Asker:
    """An application's prompt: answers from a list, and counts what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[SecretRequest] = []

    def __call__(self, request: SecretRequest) -> str:
        self.asked.append(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture(autouse=True)
def no_passphrase_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("STRONGROOM_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("given", [PASSPHRASE, PASSPHRASE.encode(), "secret"], ids=str)
def test_a_stack_takes_the_passphrase_in_process(tmp_path: Path, given: object) -> None:
    secret = Secret(PASSPHRASE.encode(), label="app passphrase") if given == "secret" else given
    with Strongroom(default_stack_config(tmp_path), secrets={"main": secret}) as stack:  # type: ignore[dict-item]
        stack.initialise()
        stack.store("default").put("k", b"value")
    with Strongroom(default_stack_config(tmp_path), secrets={"main": PASSPHRASE}) as stack:
        stack.keys.unlock()
        assert stack.store("default").get("k") == b"value"
        with pytest.raises(KeyLockedError, match="no new secret was given"):
            stack.keys.rewrap_for("main")  # a change needs a source that answers it
    with Strongroom(default_stack_config(tmp_path)) as stack, pytest.raises(KeyLockedError):
        stack.keys.unlock()  # nothing in the environment, no terminal: refused, not prompted


def test_an_operation_asks_once_and_the_next_asks_again(tmp_path: Path) -> None:
    asker = Asker(PASSPHRASE)
    with Strongroom(default_stack_config(tmp_path), secrets={"main": asker}) as stack:
        stack.initialise()
        assert [request.new for request in asker.asked] == [True]
        stack.keys.lock()
        asker.asked.clear()
        with stack.keys.holding_secrets():
            stack.keys.unlock()
            stack.keys.rotate_master()  # proves the passphrase on the old wrap: no new prompt
        assert len(asker.asked) == 1
        provider = stack.key_provider("main")
        assert isinstance(provider, PassphraseProvider)
        assert provider._all_held == set()  # wiped when the operation ended
        stack.keys.rotate_master()
        assert len(asker.asked) == 2  # a new operation asks again


def test_a_wrong_passphrase_is_not_held(tmp_path: Path) -> None:
    with Strongroom(default_stack_config(tmp_path), secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
    asker = Asker("a typo", PASSPHRASE)
    with Strongroom(default_stack_config(tmp_path), secrets={"main": asker}) as stack:
        with stack.keys.holding_secrets():
            with pytest.raises(UnlockFailedError):
                stack.keys.unlock()
            stack.keys.unlock()  # asked again, not answered with the held typo
        assert [request.change for request in asker.asked] == [False, False]


def test_secrets_for_an_unconfigured_provider_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unconfigured key providers: \\['nosuch'\\]"):
        Strongroom(default_stack_config(tmp_path), secrets={"nosuch": PASSPHRASE})


def test_a_provider_that_takes_no_secret_says_so() -> None:
    with pytest.raises(UsageError, match="takes no secret from its user"):
        MemoryKeyProvider().use_secret(lambda _request: PASSPHRASE)


def test_a_held_passphrase_stays_in_its_thread(tmp_path: Path) -> None:
    """Another thread, inside no block, asks for itself: nothing held crosses threads."""
    asker = Asker(PASSPHRASE)
    with Strongroom(default_stack_config(tmp_path), secrets={"main": asker}) as stack:
        stack.initialise()
        provider = stack.key_provider("main")
        inside, done = threading.Event(), threading.Event()

        def hold() -> None:
            with stack.keys.holding_secrets():
                provider.unwrap(wrapped, context)
                inside.set()
                done.wait(10)

        record = json.loads((stack.config.account_dir / "keys.json").read_text())
        wrapped = base64.b64decode(record["wraps"]["main"]["blob"])
        context = WrapContext("alice", "master", 1)
        asker.asked.clear()
        holder = threading.Thread(target=hold)
        holder.start()
        inside.wait(10)
        provider.unwrap(wrapped, context)  # this thread holds nothing: it asks
        done.set()
        holder.join()
        assert len(asker.asked) == 2


def test_locking_drops_what_providers_hold(tmp_path: Path) -> None:
    asker = Asker(PASSPHRASE)
    with Strongroom(default_stack_config(tmp_path), secrets={"main": asker}) as stack:
        stack.initialise()
        stack.keys.lock()
        asker.asked.clear()
        with stack.keys.holding_secrets():
            stack.keys.unlock()
            stack.keys.lock()  # the user locked: unlocking again needs them again
            stack.keys.unlock()
        assert len(asker.asked) == 2


def test_a_changed_passphrase_is_not_held_as_the_current_one(tmp_path: Path) -> None:
    current = {"passphrase": PASSPHRASE}

    def user(request: SecretRequest) -> str:
        return "the next passphrase" if request.change else current["passphrase"]

    with Strongroom(default_stack_config(tmp_path), secrets={"main": user}) as stack:
        stack.initialise()
        with stack.keys.holding_secrets():
            stack.keys.rotate_master(rewrap="main")
            current["passphrase"] = "the next passphrase"  # noqa: S105 - a test's own
            stack.keys.rotate_master()  # proves the new one, asked afresh, not the held old one


@pytest.mark.parametrize("answer", [None, 123], ids=["nothing", "a number"])
def test_a_source_that_answers_no_passphrase_is_a_locked_key(
    tmp_path: Path, answer: object
) -> None:
    with Strongroom(default_stack_config(tmp_path), secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
    answering = Strongroom(default_stack_config(tmp_path), secrets={"main": lambda _r: answer})
    with answering, pytest.raises(KeyLockedError, match="no passphrase was given"):
        answering.keys.unlock()
    with pytest.raises(UsageError, match="not NoneType"):
        Strongroom(default_stack_config(tmp_path), secrets={"main": None})  # type: ignore[dict-item]
