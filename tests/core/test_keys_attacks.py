"""Attacks on the key record, provider removal and wipe, at the library level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accounts import PURPOSES, make_keys
from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    UnlockFailedError,
)
from strongroom.key_provider import WrapContext
from strongroom.testing import MemoryKeyProvider


def _account(tmp_path: Path, providers: dict[str, MemoryKeyProvider]):
    keys = make_keys(tmp_path / "alice", providers, count_objects=lambda _p, _v: 0)
    keys.create()
    keys.ensure(*PURPOSES)
    return keys


def test_wipe_of_an_account_whose_keys_json_is_missing_erases_every_configured_root(
    tmp_path: Path,
) -> None:
    provider = MemoryKeyProvider()
    keys = _account(tmp_path, {"main": provider})
    wrapped = provider.wrap(b"\0" * 32, WrapContext("alice", "master", 1))
    (keys.directory / "keys.json").unlink()  # lost, or moved aside as a "backup"
    make_keys(keys.directory, {"main": provider}).destroy_all()
    assert provider.destroyed == ["alice"]
    with pytest.raises(KeyUnavailableError):
        provider.unwrap(wrapped, WrapContext("alice", "master", 1))


def test_wipe_of_a_record_whose_wraps_were_edited_out_erases_every_configured_root(
    tmp_path: Path,
) -> None:
    main, os_ = MemoryKeyProvider(), MemoryKeyProvider()
    keys = _account(tmp_path, {"main": main, "os": os_})
    path = keys.directory / "keys.json"
    backup = path.read_bytes()
    data = json.loads(path.read_text())
    del data["wraps"]["os"]  # the wraps are outside the MAC: nothing notices
    path.write_text(json.dumps(data))
    make_keys(keys.directory, {"main": main, "os": os_}).destroy_all()
    assert "alice" in os_.destroyed
    # With the root alive, the backup still opens through "os".
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(backup)
    with pytest.raises(KeyUnavailableError):
        make_keys(keys.directory, {"os": os_}).unlock()


def test_a_provider_removal_whose_root_cannot_be_erased_can_be_finished(tmp_path: Path) -> None:
    main, os_ = MemoryKeyProvider(), MemoryKeyProvider()
    keys = _account(tmp_path, {"main": main, "os": os_})
    os_.fail = KeyLockedError("the OS keyring is locked")  # only its destroy needs it here
    with pytest.raises(KeyLockedError):
        keys.remove_provider("os")
    os_.fail = None
    # The failed command already dropped the wrap: retrying is refused, the root is never erased.
    keys.remove_provider("os")
    assert "alice" in os_.destroyed


def _passphrase_provider(answers: list[str]):
    from strongroom_plugins.providers.passphrase import PassphraseProvider, PassphraseSettings

    settings = PassphraseSettings(memory_kib=19456, iterations=2, lanes=1)
    return PassphraseProvider(settings, passphrase=lambda _request: answers[0])


def test_a_master_rotation_unlocked_by_another_provider_keeps_the_passphrase(
    tmp_path: Path,
) -> None:
    answers = ["the real passphrase"]
    os_, main = MemoryKeyProvider(), _passphrase_provider(answers)
    keys = make_keys(tmp_path / "alice", {"os": os_, "main": main})  # type: ignore[dict-item]
    keys.create()
    keys.ensure(*PURPOSES)
    keys.lock()
    keys.unlock("os")  # the keyring unlocks; nobody proves they know the passphrase
    answers[0] = "a typo in the passphrase file"
    with pytest.raises(UnlockFailedError):  # the typo does not open main's wrap: refused
        keys.rotate_master()  # not a passphrase change (that is rotate --provider main)
    answers[0] = "the real passphrase"
    fresh = make_keys(keys.directory, {"main": main})  # type: ignore[dict-item]
    fresh.unlock("main")


def test_a_removed_passphrase_no_longer_unlocks_even_with_its_old_wrap_put_back(
    tmp_path: Path,
) -> None:
    os_ = MemoryKeyProvider()
    recovery = _passphrase_provider(["the recovery passphrase"])
    providers = {"os": os_, "recovery": recovery}
    keys = make_keys(tmp_path / "alice", providers)  # type: ignore[arg-type]
    keys.create()
    keys.ensure(*PURPOSES)
    path = keys.directory / "keys.json"
    old_wrap = json.loads(path.read_text())["wraps"]["recovery"]
    keys.remove_provider("recovery")  # e.g. the passphrase was known to someone who left
    keys.rotate("files")
    data = json.loads(path.read_text())
    data["wraps"]["recovery"] = old_wrap  # wraps are outside the MAC and the generation
    path.write_text(json.dumps(data))
    fresh = make_keys(keys.directory, providers)  # type: ignore[arg-type]
    with pytest.raises(UnlockFailedError):  # wrapped for a master key that is gone
        fresh.unlock("recovery")


def test_a_record_rolled_back_under_an_unlocked_session_is_refused_before_use(
    tmp_path: Path,
) -> None:
    provider = MemoryKeyProvider()  # keeps the generation, as the OS keyring does
    keys = _account(tmp_path, {"main": provider})
    keys.rotate("files")
    path = keys.directory / "keys.json"
    backup = path.read_bytes()
    keys.destroy("files", 1, force=True)  # crypto-shred files v1
    keys.raise_floor("store:notes", 1)
    path.write_bytes(backup)  # put back while the session is unlocked
    # On unlock this is refused as rolled back (exit 3); in the session it is used as it is.
    with pytest.raises(IntegrityError, match="rolled back"):
        keys.data_key("files", 1)


def test_a_passphrase_prompt_left_open_does_not_block_a_wipe(tmp_path: Path) -> None:
    """Providers ask the user outside the record's lock: a prompt left open blocks no one."""
    import threading

    from strongroom_plugins.providers.passphrase import PassphraseProvider, PassphraseSettings

    asked, answered = threading.Event(), threading.Event()

    def prompt(_request: object) -> str:  # a user who walks away from the terminal
        asked.set()
        answered.wait(30)
        return "the passphrase"

    os_ = MemoryKeyProvider()
    main = PassphraseProvider(
        PassphraseSettings(memory_kib=19456, iterations=2, lanes=1),
        passphrase=lambda _request: "the passphrase",
    )
    keys = make_keys(tmp_path / "alice", {"os": os_, "main": main})  # type: ignore[dict-item]
    keys.create()
    keys.ensure(*PURPOSES)
    main._source = prompt  # from now on the passphrase waits at its prompt
    outcome: list[BaseException | int] = []

    def rotate() -> None:
        try:
            outcome.append(keys.rotate_master())
        except BaseException as exc:
            outcome.append(exc)

    rotating = threading.Thread(target=rotate, daemon=True)
    rotating.start()
    assert asked.wait(30)  # the rotation is at the prompt
    wiping = threading.Thread(target=make_keys(keys.directory, {"os": os_}).destroy_all)
    wiping.start()
    wiping.join(10)
    blocked = wiping.is_alive()
    answered.set()
    rotating.join(30)
    wiping.join(10)
    assert not blocked
    assert isinstance(outcome[0], IntegrityError)  # the record it prepared for is gone


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000], ids=["arrays", "objects"])
def test_wipe_is_not_blocked_by_a_deeply_nested_record(tmp_path: Path, text: str) -> None:
    provider = MemoryKeyProvider()
    keys = _account(tmp_path, {"main": provider})
    (keys.directory / "keys.json").write_text(text)
    fresh = make_keys(keys.directory, {"main": provider})
    from strongroom.errors import IntegrityError

    with pytest.raises(IntegrityError):
        fresh.unlock()
    left = make_keys(keys.directory, {"main": provider}).destroy_all()
    assert any("erasing the roots of every configured provider" in line for line in left)
    assert provider.destroyed == ["alice"]


def test_a_destroyed_key_leaves_no_copy_in_a_record_left_by_a_killed_write(
    tmp_path: Path,
) -> None:
    """Crypto-shredding: after 'destroy', no file strongroom left in the account holds the key."""

    from test_keys_crash import CHILD, KEK, _account, kill_at

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "alice"
    _account(directory)
    for stop_at in range(5):  # stop the child just before it renames its new record in
        if kill_at(script, directory, "rotate files", stop_at) == "stopped rename":
            break
    else:
        pytest.fail("the child never reached the rename")
    keys = make_keys(
        directory, {"main": MemoryKeyProvider(kek=KEK)}, count_objects=lambda _p, _v: 0
    )
    keys.unlock()
    keys.rotate("files")
    wrapped_v1 = json.loads((directory / "keys.json").read_text())["keysets"]["files"]["versions"][
        "1"
    ]["wrapped"]
    keys.destroy("files", 1, force=True)
    holders = [p.name for p in directory.iterdir() if p.is_file() and wrapped_v1 in p.read_text()]
    assert holders == []


def test_removing_the_generation_keeper_keeps_refusing_an_older_record_while_configured(
    tmp_path: Path,
) -> None:
    main = _passphrase_provider(["the passphrase"])  # keeps no generation
    os_ = MemoryKeyProvider()  # keeps one, as the OS keyring does
    keys = make_keys(tmp_path / "alice", {"main": main, "os": os_}, count_objects=lambda _p, _v: 0)  # type: ignore[dict-item]
    keys.create()
    keys.ensure(*PURPOSES)
    keys.rotate("files")
    path = keys.directory / "keys.json"
    backup = path.read_bytes()
    keys.destroy("files", 1, force=True)
    keys.remove_provider("os")  # erases the KEK, and with it the kept generation
    path.write_bytes(backup)  # would bring files v1 back
    fresh = make_keys(keys.directory, {"main": main, "os": os_})  # type: ignore[dict-item]  # os is still configured
    from strongroom.errors import IntegrityError

    with pytest.raises(IntegrityError, match="rolled back"):
        fresh.unlock("main")


def test_a_record_put_back_under_an_unlocked_session_is_never_written_over_the_newest(
    tmp_path: Path,
) -> None:
    provider = MemoryKeyProvider()  # keeps the generation
    keys = _account(tmp_path, {"main": provider})
    path = keys.directory / "keys.json"
    backup = path.read_bytes()
    keys.rotate("files")
    written_under = keys.data_key("files", 2).material.export_raw(reason="compare in test")
    newest = path.read_bytes()
    path.write_bytes(backup)  # an older copy put back while the session is unlocked
    with pytest.raises(IntegrityError, match="rolled back"):
        keys.rotate("files")
    assert path.read_bytes() == backup  # nothing was written over it
    path.write_bytes(newest)
    fresh = make_keys(keys.directory, {"main": provider})
    fresh.unlock()
    got = fresh.data_key("files", 2).material.export_raw(reason="compare in test")
    assert got == written_under
