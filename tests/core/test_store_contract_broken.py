"""``StoreContract`` rejects stores that leak or let values change places, each for its flaw.

The whole contract runs, in a child pytest, against each broken store in
``tests/fixtures/broken_stores``; the tests that fail must be exactly the
checks its flaw breaks.  Everything else passing shows the store works,
so it is the new checks, not an accident, that reject it.  The same run
shows that a contract subclass without the raw-form hooks fails, and that
one opting out is reported as skipped, with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

RAW_FORM_TESTS = {
    "test_the_raw_form_hooks_round_trip",
    "test_swapped_records_are_refused",
    "test_a_record_from_another_store_is_refused",
    "test_altered_records_are_refused",
    "test_a_replayed_older_form_reads_as_itself_or_is_refused",
    "test_a_form_older_than_a_completed_reencryption_is_refused",
}

#: Skipped for every store here: the SQLite store does not purge by age (``purge_expired``).
RETENTION_TESTS = {
    "test_purge_expired_deletes_only_what_was_written_before",
    "test_purge_expired_with_nothing_due_changes_nothing",
    "test_reencryption_does_not_make_data_new",
}

#: Each broken store, and the contract tests its flaw must fail (and no others).
EXPECTED_FAILURES = {
    "PlaintextValuesStore": {
        "test_the_medium_shows_no_value",
        "test_the_raw_form_hooks_round_trip",
        "test_swapped_records_are_refused",
        "test_altered_records_are_refused",
    },
    "ClearKeysStore": {
        "test_the_medium_shows_no_record_key",
        "test_overwritten_and_deleted_data_leaves_nothing_in_the_clear",
        # an opaque id must not be the key either
        "test_forced_retirement_leaves_the_store_usable_and_purgeable[retire]",
        "test_forced_retirement_leaves_the_store_usable_and_purgeable[destroy]",
    },
    "OneContextStore": {
        "test_swapped_records_are_refused",
    },
    # unseen: the scan reads fewer bytes than the values given, and says so
    "ElsewhereStore": {
        "test_the_medium_shows_no_value",
    },
}

CONTRACTS = (
    f"""
import sys
sys.path.insert(0, {str(FIXTURES)!r})

from broken_stores import {", ".join(sorted(EXPECTED_FAILURES))}
from third_party.contract import SqliteStoreContract
from strongroom.testing import StoreContract
"""
    + "".join(
        f"""

class Test{name}(SqliteStoreContract):
    store_class = {name}
"""
        for name in sorted(EXPECTED_FAILURES)
    )
    + """

class TestElsewhereNamed(SqliteStoreContract):
    store_class = ElsewhereStore

    def stored_paths(self, store):
        return [store.path]


class TestWithoutHooks(SqliteStoreContract):
    raw_record = StoreContract.raw_record
    put_raw = StoreContract.put_raw


class TestOptedOut(TestWithoutHooks):
    raw_forms_unavailable = "rows live on a server this test cannot reach"
"""
)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, tuple[str, str]]]:
    """``{class: {test: (outcome, message)}}`` from one child pytest over every contract."""
    directory = tmp_path_factory.mktemp("broken")
    (directory / "test_broken_contracts.py").write_text(CONTRACTS)
    (directory / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    report = directory / "report.xml"
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("PYTEST_ADDOPTS", None)
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"),
            *(f"--junitxml={report}", "--rootdir", str(directory), str(directory)),
        ],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert report.exists(), completed.stdout + completed.stderr
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for case in ElementTree.parse(report).iter("testcase"):  # noqa: S314 - our child's report
        contract = case.attrib["classname"].rsplit(".Test", 1)[1]
        outcome = ("passed", "")
        for child in case:
            if child.tag in {"failure", "error"}:
                outcome = ("failed", child.attrib.get("message", ""))
            elif child.tag == "skipped":
                outcome = ("skipped", child.attrib.get("message", ""))
        if case.attrib["name"] not in RETENTION_TESTS:
            found.setdefault(contract, {})[case.attrib["name"]] = outcome
        else:
            assert outcome[0] == "skipped", outcome
            assert outcome[1].endswith("does not purge by age"), outcome
    return found


@pytest.mark.parametrize("store", sorted(EXPECTED_FAILURES))
def test_the_contract_rejects_the_broken_store_for_its_flaw(
    outcomes: dict[str, dict[str, tuple[str, str]]], store: str
) -> None:
    results = outcomes[store]
    assert len(results) > 40, f"the contract did not run against {store}: {results}"
    failed = {test for test, (outcome, _) in results.items() if outcome == "failed"}
    assert failed == EXPECTED_FAILURES[store]
    assert "skipped" not in {outcome for outcome, _ in results.values()}


def test_a_contract_without_the_raw_form_hooks_fails_naming_them(
    outcomes: dict[str, dict[str, tuple[str, str]]],
) -> None:
    results = outcomes["WithoutHooks"]
    failed = {test for test, (outcome, _) in results.items() if outcome == "failed"}
    assert failed == RAW_FORM_TESTS
    for test in RAW_FORM_TESTS:
        assert "must implement raw_record(store, key) and put_raw" in results[test][1]


def test_a_contract_opting_out_of_raw_forms_is_reported_as_skipped_with_why(
    outcomes: dict[str, dict[str, tuple[str, str]]],
) -> None:
    results = outcomes["OptedOut"]
    skipped = {test for test, (outcome, _) in results.items() if outcome == "skipped"}
    assert skipped == RAW_FORM_TESTS
    for test in RAW_FORM_TESTS:
        assert "rows live on a server this test cannot reach" in results[test][1]
    assert "failed" not in {outcome for outcome, _ in results.values()}


def test_a_store_writing_outside_its_directory_passes_once_it_names_where(
    outcomes: dict[str, dict[str, tuple[str, str]]],
) -> None:
    unseen = outcomes["ElsewhereStore"]["test_the_medium_shows_no_value"]
    assert "name where it writes in stored_paths()" in unseen[1]
    results = outcomes["ElsewhereNamed"]
    assert {outcome for outcome, _ in results.values()} == {"passed"}
