"""The data and key commands of ``strongroom``, run as a user runs them: in subprocesses.

Every test works in its own data directory under ``tmp_path``, with a config
whose passphrase provider uses Argon2id's smallest accepted cost and whose
passphrase comes from ``STRONGROOM_PASSPHRASE_FILE`` (mode 0600).  Most tests
start from a copy of two accounts (``alice`` and ``other``) initialised once
per module, and independent commands run side by side: each costs about
half a second of interpreter start-up.  Every run is checked for the CLI's
promises: no traceback, an error is exactly one line, a success writes
nothing to stderr, and no passphrase is ever printed.

Helpers here are shared with ``test_cli_keyring.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from strongroom.formats import peek_key_version
from strongroom.formats.chunked import DEFAULT_CHUNK_SIZE, HEADER_SIZE, MAGIC, TAG_SIZE
from strongroom.formats.sealed import MAGIC as SEALED_MAGIC

SCRIPT = Path(sys.executable).with_name("strongroom")
FILE_VARIABLE = "STRONGROOM_PASSPHRASE_FILE"
PASSPHRASE = "alice's strongroom passphrase 4f1c"  # noqa: S105 - a test's own
WRONG_PASSPHRASE = "not alice's passphrase"  # noqa: S105
#: Every passphrase a test uses: none may ever appear in the CLI's output.
SECRETS = (PASSPHRASE, WRONG_PASSPHRASE, "main passphrase 91d0", "recovery passphrase 0b7e")
#: Magic numbers of every wrapped form a key may take in ``keys.json``.
WRAP_MAGICS = {b"SRPW", b"SRKR", SEALED_MAGIC}
MIB = 1 << 20
STORES = ("default", "notes")


def toml_string(value: str | Path) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value))


def passphrase_table(name: str, passphrase_file: Path | None = None) -> str:
    """A ``[key_providers.<name>]`` passphrase provider at the smallest accepted cost."""
    lines = [
        f"[key_providers.{name}]",
        'use = "passphrase"',
        "memory_kib = 19456",
        "iterations = 2",
        "lanes = 1",
    ]
    if passphrase_file is not None:
        lines.append(f"passphrase = {toml_string(f'file:{passphrase_file}')}")
    return "\n".join(lines) + "\n"


def write_config(
    path: Path, data_dir: Path, *tables: str, stores: tuple[str, ...] = STORES
) -> Path:
    parts = [f'[strongroom]\ndata_dir = {toml_string(data_dir)}\naccount = "alice"\n', *tables]
    parts += [f'[stores.{name}]\nuse = "files"\n' for name in stores]
    path.write_text("\n".join(parts))
    return path


def write_private(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without anything that steers strongroom, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("STRONGROOM") and name != "PYTHON_KEYRING_BACKEND"
    }
    return {**env, **extra}


def cli_command() -> list[str]:
    """The installed ``strongroom`` script, or the module where it is not installed."""
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "strongroom.cli.main"]


def strongroom(
    *args: str | Path,
    env: Mapping[str, str],
    stdin: bytes | None = None,
    launcher: Sequence[str] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI and check what every run promises, whatever its exit code.

    ``launcher`` is put before the command: a program that sets the scene
    (a resource limit, another user, a closed descriptor) and runs the rest.
    """
    feed: dict[str, Any] = {"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}
    result = subprocess.run(
        [*launcher, *cli_command(), *map(str, args)],
        capture_output=True,
        env=dict(env),
        timeout=60,
        check=False,
        **feed,
    )
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr
    if result.returncode == 0:
        # no progress bar off a terminal; warnings only where an operator must act
        assert all(line.startswith("strongroom: warning: ") for line in stderr.splitlines())
    else:
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("strongroom: error: "), stderr
    for secret in SECRETS:
        assert secret.encode() not in result.stdout + result.stderr
    return result


#: uid and gid of ``nobody``, which tests running as root take on so permissions count.
NOBODY = 65534


@dataclass(frozen=True)
class Unprivileged:
    """How to run a program as a user whom permission bits and ptrace rules bind.

    As root, that is ``nobody`` through ``setpriv``, keeping only
    ``CAP_DAC_READ_SEARCH`` so it can still read the interpreter under a
    private home: it can read anything but write only what it owns.  As
    any other user, it is that user, unchanged.
    """

    launcher: tuple[str, ...]
    uid: int

    def give(self, *paths: Path) -> None:
        """Make ``paths``, and everything under them, the user's own."""
        if self.uid == os.geteuid():
            return
        for path in paths:
            os.chown(path, self.uid, self.uid, follow_symlinks=False)
            for directory, subdirectories, files in os.walk(path):
                for name in [*subdirectories, *files]:
                    os.chown(
                        os.path.join(directory, name), self.uid, self.uid, follow_symlinks=False
                    )

    @contextlib.contextmanager
    def read_only(self, directory: Path) -> Iterator[None]:
        """``directory`` cannot gain or lose entries for the user while this lasts."""
        before = directory.stat()
        if self.uid == os.geteuid():
            directory.chmod(0o555)
        else:
            os.chown(directory, 0, 0)
        try:
            yield
        finally:
            directory.chmod(stat.S_IMODE(before.st_mode))
            os.chown(directory, before.st_uid, before.st_gid)


def unprivileged() -> Unprivileged:
    """:class:`Unprivileged` for this test run; skips as root where ``setpriv`` is missing."""
    if os.geteuid() != 0:
        return Unprivileged((), os.geteuid())
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and setpriv (util-linux) is not installed")
    launcher = (
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    )
    return Unprivileged(launcher, NOBODY)


def concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent CLI calls side by side (each costs about half a second of start-up)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


@dataclass
class Account:
    """Account ``alice`` under ``data_dir``, driven through one config file."""

    config: Path
    data_dir: Path
    env: dict[str, str] = field(repr=False)
    name: str = "alice"

    @property
    def directory(self) -> Path:
        return self.data_dir / "accounts" / self.name

    @property
    def keys_file(self) -> Path:
        return self.directory / "keys.json"

    def run(
        self,
        *args: str | Path,
        code: int = 0,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        result = strongroom(
            "--config",
            self.config,
            *args,
            env=self.env if env is None else env,
            stdin=stdin,
            launcher=launcher,
        )
        assert result.returncode == code, result.stderr.decode(errors="replace")
        return result

    def text(self, *args: str | Path, stdin: bytes | None = None) -> str:
        """A successful run's standard output."""
        return self.run(*args, stdin=stdin).stdout.decode()

    def json(self, *args: str | Path) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def error(
        self,
        *args: str | Path,
        code: int,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = (),
    ) -> str:
        """The one error line of a run that must fail with ``code``, without its prefix."""
        result = self.run(*args, code=code, stdin=stdin, env=env, launcher=launcher)
        return result.stderr.decode().strip().removeprefix("strongroom: error: ")

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.keys_file.read_bytes())
        return data


def make_account(root: Path) -> Account:
    """An account with the default test config in ``root`` (not initialised)."""
    data_dir = root / "data"
    passphrase_file = write_private(root / "passphrase", PASSPHRASE)
    config = write_config(root / "strongroom.toml", data_dir, passphrase_table("main"))
    return Account(config, data_dir, clean_environ(**{FILE_VARIABLE: str(passphrase_file)}))


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under ``root``: mode, mtime, ctime and a hash of its content."""
    state = {}
    for directory, _, files in os.walk(root):
        for path in [Path(directory), *(Path(directory, name) for name in files)]:
            info = path.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path.relative_to(root))] = (
                info.st_mode,
                info.st_mtime_ns,
                info.st_ctime_ns,
                digest,
            )
    return state


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def assert_holds_only_wrapped_keys(keys_file: Path, *secrets: bytes) -> None:
    """``keys.json`` is private, and every long string in it is a wrapped key."""
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    raw = keys_file.read_bytes()
    for secret in [s.encode() for s in SECRETS] + list(secrets):
        assert secret not in raw
        assert base64.b64encode(secret) not in raw
    record = {k: v for k, v in json.loads(raw).items() if k != "mac"}  # the MAC is no key
    blobs = [text for text in strings_in(record) if len(text) >= 32]
    assert blobs  # the master key's wrap at least
    for text in blobs:
        assert base64.b64decode(text, validate=True)[:4] in WRAP_MAGICS


def keyset(listing: dict[str, Any], purpose: str) -> tuple[int, list[tuple[int, str]]]:
    """``(primary, [(version, state), ...])`` of one keyset in ``keys list --json``."""
    (found,) = [entry for entry in listing["keysets"] if entry["purpose"] == purpose]
    return found["primary"], [(v["version"], v["state"]) for v in found["versions"]]


def object_versions(account: Account, store: str = "default") -> dict[str, int]:
    """The key version in the header of every object file of a store, by file name."""
    root = account.directory / "stores" / store
    return {
        path.name: peek_key_version(path.read_bytes()[:16])
        for sub in ("records", "blobs")
        for path in (root / sub).rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the initialised accounts ``alice`` and ``other``."""
    account = make_account(tmp_path_factory.mktemp("initialised"))
    concurrently(
        lambda: account.run("init"),
        lambda: account.run("init", "--account", "other"),
    )
    return account.data_dir


@pytest.fixture
def account(tmp_path: Path, initialised: Path) -> Account:
    """``alice`` (and ``other``), initialised, in a data directory of this test's own."""
    made = make_account(tmp_path)
    shutil.copytree(initialised, made.data_dir, symlinks=True)
    return made


# -- init and status -----------------------------------------------------------------------


def test_init_creates_the_account_once_and_status_shows_no_secret(tmp_path: Path) -> None:
    account = make_account(tmp_path)
    text = account.text("status")
    assert f"config:       {account.config}" in text
    assert f"account:      alice ({account.directory})" in text
    assert "state:        not initialised; run 'strongroom init'" in text
    assert "  main (passphrase): not in use; needs user presence, survives reinstall" in text
    assert "keysets:" not in text
    assert not account.data_dir.exists()  # looking creates nothing

    assert account.text("init").splitlines() == [
        f"created account 'alice' in {account.directory}",
        "master key wrapped by: main (passphrase)",
        "stores: default, notes",
        "keysets: files, store:default, store:default:names, store:notes, store:notes:names",
    ]
    for directory in (account.data_dir, account.directory.parent, account.directory):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert_holds_only_wrapped_keys(account.keys_file)
    assert set(account.record()["wraps"]) == {"main"}

    written = snapshot(account.data_dir)
    line = account.error("init", code=2)
    assert line == (
        f"account 'alice' already has keys in {account.directory}, and every configured "
        "store has its keysets; refusing to overwrite them"
    )
    assert snapshot(account.data_dir) == written

    text, after = concurrently(lambda: account.text("status"), lambda: account.json("status"))
    assert "state:        locked (commands unlock only while they run)" in text
    assert "master key:   version 1" in text
    assert "stores:       default (files), notes (files)" in text
    assert "  main (passphrase): wraps the master key; needs user presence" in text
    assert "  store:default: v1 active (primary)" in text  # made by init, not on first use
    assert after["initialised"] is True
    assert after["locked"] is True
    assert after["master_version"] == 1
    assert after["stores"] == {"default": "files", "notes": "files"}
    main = after["providers"]["main"]
    assert (main["use"], main["wraps_master"]) == ("passphrase", True)
    keysets = {keyset["purpose"]: keyset["primary"] for keyset in after["keysets"]}
    assert keysets == dict.fromkeys(account.record()["keysets"], 1)
    assert len(keysets) == 5


# -- records -------------------------------------------------------------------------------


def test_records_and_blobs_round_trip(account: Account, tmp_path: Path) -> None:
    record = bytes(range(256)) * 3 + b"\r\n\0end"
    blob = os.urandom(3 * MIB + 12345)
    (tmp_path / "record.bin").write_bytes(record)
    (tmp_path / "blob.bin").write_bytes(blob)

    stored, *_ = concurrently(
        lambda: account.text("put", "default", "b/from-file", tmp_path / "record.bin"),
        lambda: account.run("put", "default", "a/from-stdin", "-", stdin=b"typed\nlines\n"),
        lambda: account.run("put", "default", "a/empty", stdin=b""),  # FILE defaults to stdin
        lambda: account.run("put", "default", "c/big", tmp_path / "blob.bin", "--blob"),
    )
    assert stored == "stored 'b/from-file' in default\n"

    values = concurrently(
        *(
            lambda key=key: account.run("get", "default", key).stdout
            for key in ("b/from-file", "a/from-stdin", "a/empty", "c/big")
        ),
        lambda: account.json("ls", "default", "a/"),
    )
    assert values == [
        record,
        b"typed\nlines\n",
        b"",
        blob,
        {"store": "default", "keys": ["a/empty", "a/from-stdin"]},
    ]

    removed = concurrently(
        lambda: account.text("rm", "default", "a/from-stdin"),
        lambda: account.text("rm", "default", "c/big"),
    )
    assert removed == [
        "removed 'a/from-stdin' from default\n",
        "removed 'c/big' from default\n",
    ]
    listing, gone, missing, unknown = concurrently(
        lambda: account.text("ls", "default"),
        lambda: account.run("get", "default", "c/big", code=1),
        lambda: account.error("rm", "default", "nope", code=1),
        lambda: account.error("get", "nostore", "a/empty", code=2),
    )
    assert listing == "a/empty\nb/from-file\n"  # sorted, not in the order written
    assert gone.stdout == b""
    assert gone.stderr.decode() == (
        "strongroom: error: no record or blob 'c/big' in store 'default'\n"
    )
    assert missing == "no record 'nope' in store 'default'"
    assert unknown == "no store 'nostore' is configured (configured: default, notes)"


# -- files ---------------------------------------------------------------------------------


def test_encrypt_and_decrypt_files_and_pipes(account: Account, tmp_path: Path) -> None:
    plain = os.urandom(5 * MIB + 4321)
    source, sealed, out = tmp_path / "plain.bin", tmp_path / "plain.sr", tmp_path / "out"
    source.write_bytes(plain)
    out.mkdir()

    piped = plain[: 2 * MIB + 1]
    done, encrypted = concurrently(
        lambda: account.text("encrypt", source, sealed),
        lambda: account.run("encrypt", "-", "-", stdin=piped).stdout,
    )
    assert done == f"encrypted {source} -> {sealed}\n"
    ciphertext = sealed.read_bytes()
    assert ciphertext[:4] == MAGIC
    assert len(ciphertext) == HEADER_SIZE + len(plain) + 6 * TAG_SIZE  # 6 chunks of 1 MiB
    assert plain[:4096] not in ciphertext
    assert encrypted[:4] == MAGIC

    target = out / "plain.bin"
    done, decrypted = concurrently(
        lambda: account.text("decrypt", sealed, target),
        lambda: account.run("decrypt", "-", "-", stdin=encrypted).stdout,
    )
    assert done == f"decrypted {sealed} -> {target}\n"
    assert target.read_bytes() == plain
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(out.iterdir()) == [target]
    assert decrypted == piped


def test_decrypt_refuses_altered_or_foreign_files_and_leaves_no_output(
    account: Account, tmp_path: Path
) -> None:
    plain = os.urandom(3 * MIB + 100)
    source, sealed = tmp_path / "plain.bin", tmp_path / "plain.sr"
    source.write_bytes(plain)
    foreign = tmp_path / "other.sr"
    concurrently(
        lambda: account.run("encrypt", source, sealed),
        lambda: account.run("encrypt", source, foreign, "--account", "other"),
    )
    ciphertext = sealed.read_bytes()

    def flipped(offset: int, bit: int) -> bytes:
        altered = bytearray(ciphertext)
        altered[offset] ^= bit
        return bytes(altered)

    middle = len(ciphertext) // 2
    two_chunks = HEADER_SIZE + 2 * (DEFAULT_CHUNK_SIZE + TAG_SIZE)
    failed = "authentication failed"
    never_had = "an object of files names key version 16777217, which the keyset never had"
    cases: dict[str, tuple[bytes, tuple[str, ...], str]] = {
        "bit flipped in the body": (flipped(middle, 0x10), (), failed),
        "key version altered": (flipped(7, 0x01), (), never_had),  # u32 BE at offset 7
        "truncated mid-chunk": (ciphertext[:middle], (), failed),
        "last chunk dropped": (ciphertext[:two_chunks], (), failed),
        "another account's file": (foreign.read_bytes(), (), failed),
        "under another account": (ciphertext, ("--account", "other"), failed),
    }
    out = tmp_path / "out"
    out.mkdir()

    def decrypt(number: int, data: bytes, options: tuple[str, ...]) -> str:
        bad = tmp_path / f"bad-{number}.sr"
        bad.write_bytes(data)
        return account.error("decrypt", bad, out / f"plain-{number}.bin", *options, code=3)

    lines = concurrently(
        *(
            lambda n=n, data=data, options=options: decrypt(n, data, options)
            for n, (data, options, _) in enumerate(cases.values())
        )
    )
    for (case, (_, _, expected)), line in zip(cases.items(), lines, strict=True):
        assert expected in line, case
    assert list(out.iterdir()) == []  # no output file, and no temporary file either


# -- passphrases ---------------------------------------------------------------------------


def test_a_wrong_or_missing_passphrase_changes_nothing(account: Account, tmp_path: Path) -> None:
    account.run("put", "default", "kept", stdin=b"value")
    before = snapshot(account.data_dir)

    wrong = write_private(tmp_path / "wrong", WRONG_PASSPHRASE)
    readable = tmp_path / "readable"
    readable.write_text(PASSPHRASE)
    readable.chmod(0o644)
    unset = {name: value for name, value in account.env.items() if name != FILE_VARIABLE}

    def using(passphrase_file: Path) -> dict[str, str]:
        return {**account.env, FILE_VARIABLE: str(passphrase_file)}

    lines = concurrently(
        lambda: account.error("get", "default", "kept", code=4, env=using(wrong)),
        lambda: account.error("put", "default", "new", stdin=b"new", code=4, env=using(wrong)),
        lambda: account.error("keys", "rotate", "--master", code=4, env=using(wrong)),
        lambda: account.error("get", "default", "kept", code=4, env=unset),  # stdin: /dev/null
        lambda: account.error("get", "default", "kept", code=2, env=using(readable)),
    )
    assert lines[:3] == ["wrong passphrase for 'alice', or the wrapped key was altered"] * 3
    assert lines[3] == (
        f"no passphrase available: set {FILE_VARIABLE} or STRONGROOM_PASSPHRASE_COMMAND, "
        "or run on a terminal to be asked"
    )
    group_readable = "file is accessible to group or others; chmod 600 it"
    assert lines[4] == f"{FILE_VARIABLE}: file:{readable}: {group_readable}"
    assert snapshot(account.data_dir) == before


# -- keys ----------------------------------------------------------------------------------


def test_reencrypt_reports_its_rates_in_json(account: Account) -> None:
    concurrently(
        lambda: account.run("put", "default", "a", stdin=os.urandom(1000)),
        lambda: account.run("put", "default", "blob", "--blob", stdin=os.urandom(MIB + 5)),
    )
    root = account.directory / "stores" / "default"
    objects = [path for sub in ("records", "blobs") for path in (root / sub).rglob("*")]
    stored = sum(path.stat().st_size for path in objects if path.is_file())
    account.run("keys", "rotate", "--purpose", "store:default")
    summary = account.json("keys", "reencrypt")
    default, notes = summary["default"], summary["notes"]
    assert (default["done"], default["total"], default["bytes"]) == (2, 2, stored)
    assert default["seconds"] > 0
    assert default["objects_per_second"] == pytest.approx(2 / default["seconds"], rel=0.01)
    expected_mb = stored / default["seconds"] / 1e6
    assert default["mb_per_second"] == pytest.approx(expected_mb, rel=0.01, abs=0.001)
    assert [notes[field] for field in ("done", "total", "bytes", "objects_per_second")] == [0] * 4
    again = account.json("keys", "reencrypt")["default"]  # nothing left to rewrite
    assert (again["done"], again["bytes"], again["mb_per_second"]) == (2, 0, 0)


def test_rotate_reencrypt_retire_and_destroy(account: Account) -> None:
    blob = os.urandom(2 * MIB + 3)
    concurrently(
        lambda: account.run("put", "default", "a", stdin=b"alpha"),
        lambda: account.run("put", "default", "b", stdin=b"beta"),
        lambda: account.run("put", "default", "blob", "--blob", stdin=blob),
    )

    rotated = account.text("keys", "rotate", "--purpose", "store:default")
    assert rotated == "store:default: new primary version 2\n"
    assert set(object_versions(account).values()) == {1}  # nothing re-encrypted
    listing, value = concurrently(
        lambda: account.json("keys", "list"),
        lambda: account.run("get", "default", "a").stdout,
    )
    assert keyset(listing, "store:default") == (2, [(1, "active"), (2, "active")])
    assert [entry["purpose"] for entry in listing["keysets"]] == [
        "files",
        "store:default",
        "store:default:names",
        "store:notes",
        "store:notes:names",
    ]
    assert value == b"alpha"  # old data keeps opening

    summary = account.text("keys", "reencrypt")
    rates = r" \([\d,]+ objects/s, [\d,]+\.\d MB/s\)"
    assert re.fullmatch(f"default: 3 of 3 current{rates}\nnotes: 0 of 0 current{rates}\n", summary)
    assert set(object_versions(account).values()) == {2}

    stores = snapshot(account.directory / "stores")
    assert account.record()["master_version"] == 1
    assert account.text("keys", "rotate", "--master") == (
        "master key is now version 2; data keys re-wrapped, data untouched\n"
    )
    assert account.record()["master_version"] == 2
    assert snapshot(account.directory / "stores") == stores
    assert_holds_only_wrapped_keys(account.keys_file)
    values = concurrently(
        lambda: account.run("get", "default", "b").stdout,
        lambda: account.run("get", "default", "blob").stdout,
    )
    assert values == [b"beta", blob]

    retired, primary, names = concurrently(
        lambda: account.text("keys", "retire", "store:default", "1"),
        lambda: account.error("keys", "destroy", "store:default", "2", code=2),
        lambda: account.error("keys", "rotate", "--purpose", "store:default:names", code=2),
    )
    assert retired == "store:default version 1 retired: it no longer decrypts\n"
    assert primary == "store:default key version 2 is primary; rotate the keyset first"
    assert names == "store:default:names is never rotated: every record name would change"

    # Destroying a version that still encrypts data is refused unless forced; forced, it
    # shreds that data.
    account.run("keys", "rotate", "--purpose", "store:default")
    refused = account.error("keys", "destroy", "store:default", "2", code=2)
    assert refused.startswith("3 object(s) of store:default are still under key version 2")
    destroyed = account.text("keys", "destroy", "store:default", "2", "--force")
    assert destroyed == "store:default version 2 destroyed: what it encrypted is unreadable\n"
    assert account.record()["keysets"]["store:default"]["versions"]["2"]["wrapped"] is None
    line, listing = concurrently(
        lambda: account.error("get", "default", "a", code=4),
        lambda: account.json("keys", "list"),
    )
    assert line == (
        "store 'default': an object is under key version 2, which is destroyed; "
        "it can only be purged"
    )
    assert keyset(listing, "store:default") == (
        3,
        [(1, "retired"), (2, "destroyed"), (3, "active")],
    )


# -- providers -----------------------------------------------------------------------------


def test_any_provider_unlocks_and_the_last_cannot_be_removed(tmp_path: Path) -> None:
    main = write_private(tmp_path / "main.pass", "main passphrase 91d0")
    recovery = write_private(tmp_path / "recovery.pass", "recovery passphrase 0b7e")
    wrong = write_private(tmp_path / "wrong.pass", WRONG_PASSPHRASE)
    config = write_config(
        tmp_path / "strongroom.toml",
        tmp_path / "data",
        passphrase_table("main", main),
        passphrase_table("recovery", recovery),
        stores=("default",),
    )
    account = Account(config, tmp_path / "data", clean_environ())  # no passphrase variable

    def wrong_for(provider: str) -> dict[str, str]:
        """The environment with one provider's ``passphrase`` setting overridden to a wrong one."""
        variable = f"STRONGROOM__KEY_PROVIDERS__{provider.upper()}__PASSPHRASE"
        return {**account.env, variable: f"file:{wrong}"}

    def get(env: dict[str, str]) -> bytes:
        return account.run("get", "default", "k", env=env).stdout

    init = account.text("init").splitlines()
    assert init[1] == "master key wrapped by: main (passphrase), recovery (passphrase)"
    assert set(account.record()["wraps"]) == {"main", "recovery"}
    account.run("put", "default", "k", stdin=b"value")
    either = concurrently(lambda: get(wrong_for("recovery")), lambda: get(wrong_for("main")))
    assert either == [b"value", b"value"]

    removed = account.text("providers", "remove", "main")
    assert removed == "provider 'main' no longer unlocks account 'alice'\n"
    assert set(account.record()["wraps"]) == {"recovery"}
    refused, last = concurrently(
        # main's passphrase is right, but main no longer unlocks the account
        lambda: account.error("get", "default", "k", code=4, env=wrong_for("recovery")),
        lambda: account.error("providers", "remove", "recovery", code=2),
    )
    assert refused == "wrong passphrase for 'alice', or the wrapped key was altered"
    assert last == (
        "'recovery' is the only provider of account 'alice'; add another before removing it"
    )
    assert set(account.record()["wraps"]) == {"recovery"}

    added = account.text("providers", "add", "main")  # unlocked through recovery alone
    assert added == "provider 'main' now also unlocks account 'alice'\n"
    again, listing, value = concurrently(
        lambda: account.error("providers", "add", "recovery", code=2),
        lambda: account.json("providers", "list"),
        lambda: get(wrong_for("recovery")),  # through main again
    )
    assert again == "provider 'recovery' already wraps the master key"
    assert {name: info["wraps_master"] for name, info in listing["providers"].items()} == {
        "main": True,
        "recovery": True,
    }
    assert value == b"value"


# -- wipe ----------------------------------------------------------------------------------


def test_wipe_needs_yes_then_destroys_the_account(account: Account) -> None:
    account.run("put", "default", "k", stdin=b"value")
    before = snapshot(account.data_dir)
    line = account.error("wipe", code=2)
    assert line == "wipe destroys the account's keys and data for good; add --yes"
    assert snapshot(account.data_dir) == before

    other = snapshot(account.data_dir / "accounts" / "other")
    assert account.text("wipe", "--yes") == (
        f"account 'alice' wiped: keys destroyed, provider roots erased, "
        f"{account.directory} removed\n"
    )
    assert not account.directory.exists()
    assert snapshot(account.data_dir / "accounts" / "other") == other

    line = account.error("get", "default", "k", code=4)
    assert line == (f"account 'alice' has no keys in {account.directory}; run 'strongroom init'")
    assert not account.directory.exists()


def test_wipe_names_a_wrapping_provider_the_config_no_longer_has(tmp_path: Path) -> None:
    main = write_private(tmp_path / "main.pass", "main passphrase 91d0")
    recovery = write_private(tmp_path / "recovery.pass", "recovery passphrase 0b7e")
    tables = (passphrase_table("main", main), passphrase_table("recovery", recovery))
    config = write_config(tmp_path / "strongroom.toml", tmp_path / "data", *tables)
    account = Account(config, tmp_path / "data", clean_environ())
    account.run("init")
    write_config(config, tmp_path / "data", tables[0])  # recovery dropped from the config

    result = account.run("wipe", "--yes", "--json")
    assert json.loads(result.stdout)["left"] == [
        "provider recovery (passphrase) is not configured here; "
        "erase its root for account 'alice' by hand if it keeps one"
    ]
    assert result.stderr.decode() == (
        "strongroom: warning: provider recovery (passphrase) is not configured here; "
        "erase its root for account 'alice' by hand if it keeps one\n"
    )
    assert not account.directory.exists()
