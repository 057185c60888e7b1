"""Fixtures the files-store tests share: an account of the in-memory provider and a store in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from files_store_support import KEK, bind, open_files_store

from strongroom.keys import AccountKeys
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.stores.files import FilesStore


@pytest.fixture
def account_keys(tmp_path: Path) -> Iterator[AccountKeys]:
    """Account ``alice``, created, with the in-memory provider under the fixed ``KEK``."""
    keys = make_account_keys(tmp_path / "alice", provider=MemoryKeyProvider(kek=KEK))
    keys.create()
    yield keys
    keys.close()


@pytest.fixture
def store(account_keys: AccountKeys) -> Iterator[FilesStore]:
    """A ``files`` store named ``notes`` in that account, closed afterwards."""
    with open_files_store(bind(account_keys)) as store:
        yield store
