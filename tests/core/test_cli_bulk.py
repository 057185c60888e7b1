"""``strongroom put-many``: records from JSON lines, stored all or nothing."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from test_cli_data import Account, concurrently, initialised, make_account  # noqa: F401


@pytest.fixture
def account(tmp_path: Path, initialised: Path) -> Account:  # noqa: F811
    made = make_account(tmp_path)
    shutil.copytree(initialised, made.data_dir, symlinks=True)
    return made


def test_put_many_stores_json_lines_in_one_batch(account: Account, tmp_path: Path) -> None:
    binary = bytes(range(256))
    lines = [
        json.dumps({"key": "text", "value": "plain text ✓"}),
        "",
        json.dumps({"key": "binary", "value_b64": base64.b64encode(binary).decode()}),
        json.dumps({"key": "text", "value": "the last of a key wins"}),
    ]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    assert account.text("put-many", "default", tmp_path / "batch.jsonl") == (
        "stored 2 records in default\n"
    )
    result = account.run("put-many", "notes", "-", "--json", stdin=b'{"key": "n", "value": "1"}')
    assert json.loads(result.stdout) == {"stored": 1, "store": "notes"}
    text, raw, listing, notes = concurrently(
        lambda: account.run("get", "default", "text").stdout,
        lambda: account.run("get", "default", "binary").stdout,
        lambda: account.text("ls", "default"),
        lambda: account.text("ls", "notes"),
    )
    assert (text, raw) == (b"the last of a key wins", binary)
    assert listing == "binary\ntext\n"
    assert notes == "n\n"


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        '{"value": "no key"}',
        '{"key": "k"}',
        '{"key": "k", "value": "both", "value_b64": "Ym90aA=="}',
        '{"key": "k", "value_b64": "not base64!"}',
        '{"key": 7, "value": "a number for a key"}',
        '["a", "list"]',
    ],
)
def test_a_bad_line_stores_nothing_and_quotes_nothing(account: Account, bad: str) -> None:
    stdin = ('{"key": "first", "value": "fine"}\n' + bad + "\n").encode()
    error = account.error("put-many", "default", stdin=stdin, code=2)
    assert error.startswith("standard input line 2: expected a JSON object")
    for quoted in ("fine", "both", "list"):
        assert quoted not in error
    assert account.text("ls", "default") == ""
