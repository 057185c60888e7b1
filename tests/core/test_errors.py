"""The error tree: exit codes the CLI documents, and no authentication oracle."""

from __future__ import annotations

import inspect

import pytest

from strongroom import errors
from strongroom.errors import (
    AuthenticationError,
    ConfigError,
    IntegrityError,
    KeyUnavailableError,
    PinMismatchError,
    RecordNotFoundError,
    StrongroomError,
)

EXPECTED_EXIT_CODES = {
    "StrongroomError": 1,
    "UsageError": 2,
    "ConfigError": 2,
    "PluginError": 2,
    "BackendNotFoundError": 2,
    "BackendBlockedError": 2,
    "BackendUnavailableError": 2,
    "PluginLoadError": 1,
    "SecretSourceError": 2,
    "IntegrityError": 3,
    "AuthenticationError": 3,
    "KeyUnavailableError": 4,
    "KeyLockedError": 4,
    "ProviderUnreachableError": 4,
    "ProviderKeyLostError": 4,
    "UnlockFailedError": 4,
    "StoreError": 1,
    "RecordNotFoundError": 1,
    "TransportError": 1,
    "PinMismatchError": 3,
    "RequestVerificationError": 3,
    "NonceCacheUnavailableError": 1,
    "IdempotencyUnavailableError": 1,
    "ServerStorageError": 1,
    "ServerStorageUnavailableError": 1,
    "ServerObjectNotFoundError": 1,
    "UploadIncompleteError": 1,
    "RequestRefusedError": 1,
    "ClockSkewError": 1,
}


def _error_classes() -> dict[str, type[StrongroomError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, StrongroomError)
    }


def test_every_error_has_its_documented_exit_code() -> None:
    classes = _error_classes()
    assert set(classes) == set(EXPECTED_EXIT_CODES)
    assert {name: cls.exit_code for name, cls in classes.items()} == EXPECTED_EXIT_CODES


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    drawn = {
        line.split("──")[-1].split()[0] for line in errors.__doc__.splitlines() if "──" in line
    }
    assert drawn | {"StrongroomError"} == set(_error_classes())


def test_authentication_failures_carry_no_detail() -> None:
    assert str(AuthenticationError()) == "authentication failed"
    assert isinstance(AuthenticationError(), IntegrityError)


def test_config_error_names_source_and_location() -> None:
    error = ConfigError(
        "expected a boolean", source="/etc/s.toml", location="[plugins] key 'autoload'"
    )
    assert str(error) == "/etc/s.toml: [plugins] key 'autoload': expected a boolean"
    assert error.source == "/etc/s.toml"


def test_record_not_found_is_also_a_key_error_with_a_plain_message() -> None:
    with pytest.raises(KeyError):
        raise RecordNotFoundError("no record 'x'")
    assert str(RecordNotFoundError("no record 'x'")) == "no record 'x'"


def test_specific_errors_sit_under_their_families() -> None:
    assert issubclass(PinMismatchError, errors.TransportError)
    assert issubclass(errors.KeyLockedError, KeyUnavailableError)
    assert issubclass(errors.BackendUnavailableError, errors.PluginError)
