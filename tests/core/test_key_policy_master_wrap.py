"""While unlocked, the wrap a presence check probes comes from the authenticated record."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_key_policy import Presence, initialised, stack_of

from strongroom.errors import IntegrityError
from strongroom.key_provider import WrapContext
from strongroom.keys._record import load_record, save_record
from strongroom.secret import Secret
from strongroom_plugins.providers.passphrase import PassphraseProvider


def test_a_swapped_wrap_is_not_handed_to_a_presence_check(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"policy": "presence"})
    with stack_of(config, Presence()) as stack:
        stack.keys.unlock()
        directory = stack.keys.directory
        # Another process of the user's swaps main's wrap for one under a passphrase it knows.
        record = load_record(directory).model_copy(deep=True)
        attacker = PassphraseProvider(
            PassphraseProvider.Settings(memory_kib=19456, iterations=2)  # type: ignore[call-arg]
        )
        attacker.use_secret(lambda _request: "attacker's passphrase")
        context = WrapContext("alice", "master", record.master_version)
        record.wraps["main"].blob = attacker.wrap(bytes(32), context)
        save_record(directory, record, Secret(bytearray(32), label="junk"))  # MAC fails
        with pytest.raises(IntegrityError):
            stack.keys.master_wrap("main")  # not the altered blob, to be opened with a probe
