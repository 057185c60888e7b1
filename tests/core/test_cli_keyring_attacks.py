"""Attacks through the CLI with a real gnome-keyring: wipe and provider removal erase the KEK."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_cli_data import clean_environ, cli_command
from test_cli_keyring import KEK_ITEM, accounts

from services import GnomeKeyring


def test_wipe_erases_the_keyring_kek_even_when_keys_json_is_missing(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    both, keyring_only = accounts(tmp_path, clean_environ())
    both.run("init")
    keyring_only.run("put", "default", "k", stdin=b"value")
    backup = both.keys_file.read_bytes()
    both.keys_file.unlink()  # lost, or moved aside
    wiped = both.text("wipe", "--yes")
    assert wiped.startswith("account 'alice' wiped: keys destroyed, provider roots erased")
    assert gnome_keyring.secret_tool_lookup(**KEK_ITEM) is None
    both.directory.mkdir(parents=True)
    both.keys_file.write_bytes(backup)
    keyring_only.error("put", "default", "k2", stdin=b"v", code=4)  # today: exit 0, it opens


def test_a_provider_removal_that_failed_on_a_locked_keyring_can_be_finished(
    gnome_keyring: GnomeKeyring, tmp_path: Path
) -> None:
    both, _ = accounts(tmp_path, clean_environ())
    both.run("init")
    gnome_keyring.lock()
    # The passphrase unlocks; erasing the keyring's root needs the keyring: exit 4, "retry".
    failed = subprocess.run(
        [*cli_command(), "--config", str(both.config), "providers", "remove", "os"],
        env=both.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 4
    assert b"unlock it and retry" in failed.stderr
    # Retrying after unlocking must be possible, and until then a wipe must still erase the KEK.
    # Today the failed command already dropped the 'os' wrap: the retry exits 2 ("does not
    # wrap") and wipe skips the keyring, because the record no longer names it.
    assert "os" in both.record()["wraps"]
