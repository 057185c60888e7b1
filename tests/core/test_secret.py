"""Secret handles: never shown, never pickled or copied, zeroed on wipe."""

from __future__ import annotations

import copy
import pickle

import pytest

from strongroom.errors import KeyLockedError
from strongroom.key_provider import WrapContext
from strongroom.secret import Secret

MATERIAL = bytes(range(32))


def test_repr_and_str_show_the_label_never_the_bytes() -> None:
    secret = Secret(MATERIAL, label="master key v1")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "master key v1" in text
        assert MATERIAL.hex() not in text
        assert repr(MATERIAL)[2:-1] not in text


def test_cannot_be_pickled_or_copied() -> None:
    secret = Secret(MATERIAL, label="k")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        copy.copy(secret)
    with pytest.raises(TypeError):
        copy.deepcopy(secret)


def test_view_borrows_without_copying_and_wipe_zeroes_it() -> None:
    secret = Secret(MATERIAL, label="k")
    view = secret.view()
    assert bytes(view) == MATERIAL
    secret.wipe()
    assert bytes(view) == bytes(32)  # the very buffer was zeroed
    assert secret.wiped
    assert "wiped" in repr(secret)
    with pytest.raises(KeyLockedError):
        secret.view()
    with pytest.raises(KeyLockedError):
        secret.export_raw(reason="test")


def test_a_bytearray_source_is_zeroed_after_copying() -> None:
    source = bytearray(MATERIAL)
    secret = Secret(source, label="k")
    assert source == bytearray(32)
    assert secret.export_raw(reason="compare in test") == MATERIAL


def test_export_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="say why"):
        Secret(MATERIAL, label="k").export_raw(reason="")


def test_generate_and_constant_time_equality() -> None:
    first, second = Secret.generate(32, label="a"), Secret.generate(32, label="b")
    assert len(first) == 32
    assert not first.equals(second)
    assert first.equals(Secret(first.view(), label="copy"))


def test_wrap_context_encoding_is_canonical_and_unambiguous() -> None:
    encoded = WrapContext("alice", "files", 3).encode()
    assert encoded == b"strongroom/wrap/v1\x00\x05alice\x00\x05files\x00\x013"
    # shifting characters between fields changes the encoding
    assert WrapContext("alicef", "iles", 3).encode() != encoded
    assert WrapContext("alice", "files", 33).encode() != encoded
