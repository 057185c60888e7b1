"""The ``strongroom`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MakeDistribution
from strongroom import __version__

SCRIPT = Path(sys.executable).with_name("strongroom")
BACKEND_MODULE_PREFIXES = ("strongroom_plugins.ciphers.", "nacl")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "strongroom.cli.main"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("strongroom: error: ")
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def modules_after(*argv: str) -> list[str]:
    """Run the CLI in-process in a fresh interpreter and list what it imported."""
    probe = (
        "import sys\n"
        "from strongroom.cli.main import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.split()


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"strongroom {__version__}\n"


@pytest.mark.parametrize("argv", [("--version",), ("--help",), ("plugins",), ("plugins", "--json")])
def test_listing_commands_import_no_backend(argv: tuple[str, ...]) -> None:
    loaded = modules_after(*argv)
    assert "strongroom" in loaded
    assert [name for name in loaded if name.startswith(BACKEND_MODULE_PREFIXES)] == []


def test_version_answers_before_the_parser_is_built() -> None:
    loaded = modules_after("--version")
    assert "argparse" not in loaded
    assert "pydantic" not in loaded


def test_help_lists_commands_and_exit_codes() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for word in ("plugins", "config", "demo", "4 key unavailable"):
        assert word in result.stdout


def test_plugins_lists_each_slot_with_its_distribution() -> None:
    result = cli("plugins")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "cipher_suite (strongroom.cipher_suites)" in lines
    assert f"  aes-256-gcm         strongroom {__version__}" in lines
    assert any(
        line.startswith("  xchacha20-poly1305") and "[extra: nacl]" in line for line in lines
    )
    assert "key_providers (strongroom.key_providers)" in lines


def test_plugins_json_and_check() -> None:
    result = cli("plugins", "--check", "--json")
    assert result.returncode == 0, result.stdout
    data = json.loads(result.stdout)
    suites = next(group for group in data["groups"] if group["slot"] == "cipher_suite")
    assert {row["name"]: row["ok"] for row in suites["backends"]} == {
        "aes-256-gcm": True,
        "chacha20-poly1305": True,
        "xchacha20-poly1305": True,
    }
    assert data["failures"] == 0


def test_plugins_check_fails_on_a_broken_plugin(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "broken-plugin",
        entry_points={"strongroom.cipher_suites": {"broken": "broken_suite:Broken"}},
        modules={"broken_suite": "raise RuntimeError('plugin bug')\n"},
    )
    listed = cli("plugins")
    assert listed.returncode == 0
    assert "broken-plugin 1.0" in listed.stdout
    checked = cli("plugins", "--check")
    assert checked.returncode == 1
    broken = next(line for line in checked.stdout.splitlines() if "broken-plugin" in line)
    assert broken.split()[:3] == ["broken", "broken-plugin", "1.0"]
    assert "FAILED: " in broken
    assert "RuntimeError: plugin bug" in broken


def test_config_check_prints_the_resolved_stack(tmp_path: Path) -> None:
    config = write(tmp_path / "s.toml", '[cipher_suite]\nuse = "chacha20-poly1305"\n')
    for argv in (
        ("--config", str(config), "config", "check"),
        ("config", "check", "--config", str(config)),
    ):
        result = cli(*argv)
        assert result.returncode == 0, result.stderr
        assert f"config:   {config}" in result.stdout
        assert "[cipher_suite] chacha20-poly1305  (strongroom" in result.stdout


def test_config_check_finds_strongroom_toml_in_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path / "strongroom.toml", '[cipher_suite]\nuse = "xchacha20-poly1305"\n')
    result = cli("config", "check", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == str(tmp_path / "strongroom.toml")
    assert [backend["use"] for backend in data["backends"]] == [
        "xchacha20-poly1305",
        "passphrase",
        "files",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[cipher_suite]\nuse = "rot13"\n',
            "no backend 'rot13' in entry-point group strongroom.cipher_suites",
        ),
        ("[cipher_suite\nuse = 1\n", "invalid TOML"),
        ("[plugins]\nautoload = [1]\n", "[plugins] key 'autoload': expected a boolean"),
        (
            "[plugins]\nautolod = true\n",
            "[plugins] key 'autolod': unknown key; expected one of: autoload, block",
        ),
        (
            '[cipher_suite]\nuse = "aes-256-gcm"\nrounds = 3\n',
            "[cipher_suite] key 'rounds': unknown key",
        ),
        ('[ciphersuite]\nuse = "aes-256-gcm"\n', "[ciphersuite]: unknown table"),
    ],
)
def test_config_errors_exit_2_with_one_line_naming_the_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path / "bad.toml", text)
    line = assert_one_line_error(cli("config", "check", "--config", str(config)), 2)
    assert expected in line
    if "no backend" not in line:
        assert str(config) in line


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    line = assert_one_line_error(cli("--config", str(tmp_path / "nope.toml"), "config", "check"), 2)
    assert "nope.toml" in line
    assert "does not exist" in line


def test_missing_extra_exits_2_naming_it(
    tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "fancy-plugin",
        entry_points={"strongroom.cipher_suites": {"fancy": "fancy_suite:Fancy [turbo]"}},
        modules={"fancy_suite": "import not_installed_turbo_module\n"},
    )
    config = write(tmp_path / "s.toml", '[cipher_suite]\nuse = "fancy"\n')
    line = assert_one_line_error(cli("config", "check", "--config", str(config)), 2)
    assert "pip install 'fancy-plugin[turbo]'" in line


def test_usage_errors_exit_2_in_one_line() -> None:
    assert "invalid choice: 'bogus'" in assert_one_line_error(cli("bogus"), 2)
    assert "required" in assert_one_line_error(cli(), 2)


def test_unexpected_errors_print_only_their_type(
    tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "crashy-plugin",
        entry_points={"strongroom.cipher_suites": {"crashy": "crashy_suite:Crashy"}},
        modules={
            "crashy_suite": """
                from strongroom import BackendSettings
                from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

                class CrashySettings(BackendSettings, frozen=True):
                    def __post_init__(self):
                        raise RuntimeError("token=SECRET-THAT-MUST-NOT-PRINT")

                class Crashy(Aes256Gcm):
                    name = "crashy"
                    code = 0x8200
                    Settings = CrashySettings
            """
        },
    )
    config = write(tmp_path / "s.toml", '[cipher_suite]\nuse = "crashy"\n')
    result = cli("config", "check", "--config", str(config))
    line = assert_one_line_error(result, 1)
    assert "internal error (RuntimeError)" in line
    assert "SECRET" not in result.stderr + result.stdout


def test_demo_runs_the_whole_story_on_the_default_stack(tmp_path: Path) -> None:
    write(tmp_path / "strongroom.toml", '[cipher_suite]\nuse = "rot13"\n')  # ignored by demo
    result = cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for step in (
        "[key_providers.main] passphrase",
        "[stores.default] files",
        "init: account 'demo'",
        "stored 2 records and a 3 MiB blob; on disk they are 4 files named like ",
        "rotated the store:default keyset to version 2",
        "re-encrypted 3 of 3 objects",
        "rotated the master key to version 2",
        "decryption refused it",
        "wiped the account",
        # the sync part: the reference server on loopback, two devices
        "10. sync server: the reference server (what 'strongroom serve' runs) on "
        "https://127.0.0.1:",
        "sqlite storage and a memory nonce cache, TLS from a throwaway CA",
        "devices: laptop-1.v1 and phone-1.v1 of account 'demo'",
        "laptop: put 2 records and a 1.4 MiB blob, made the account's sync key, synced: "
        "pushed 3, 7 encrypted chunk(s) uploaded",
        "phone: imported the sync key",
        "pulled 3, 7 chunk(s) checked against the sealed manifest; both records and the blob "
        "read back equal",
        "conflict: both devices edited notes/shopping; the phone synced first",
        "the laptop keeps its losing write as a conflict copy",
        "the server refused it, 401 replay, and applied nothing",
        "17. server database: searched its raw bytes (sync.db, ",
        "for the 8 plaintexts (record values, key names, blob content): none found",
    ):
        assert step in text
    assert re.search(r"files named like [0-9a-f]{16}\.\.\., revealing no record name", text)
    pins = re.search(r"pin its key (sha256/\S{44}) and the server's (sha256/\S{44})\n", text)
    assert pins is not None
    assert pins[1] != pins[2]
    data = json.loads(cli("demo", "--json", cwd=tmp_path).stdout)
    assert len(data["steps"]) == 17
    assert data["steps"][-1].startswith("server database: ")
    assert list(tmp_path.iterdir()) == [tmp_path / "strongroom.toml"]  # nothing left behind
