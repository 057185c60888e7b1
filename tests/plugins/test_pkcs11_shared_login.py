"""A provider joining another's login to the token still has its PIN checked.

PKCS#11 login is per process, so providers on one token share a login; a
provider that does not hold it yet (a second account, or the same account
after its session locked) must still be asked for the PIN and refused when
it is wrong, as ``forget_secrets`` promises ("the next use asks for the
PIN").  A wrong PIN is put to the token itself, which counts it.
"""

from __future__ import annotations

import pytest
from test_pkcs11_provider import CONTEXT, SECRET, hsm, label, make  # noqa: F401 - fixtures

from softhsm import SoftHsm
from strongroom.errors import UnlockFailedError
from strongroom.key_provider import SecretRequest


def test_a_second_provider_with_a_wrong_pin_does_not_ride_on_the_login(
    hsm: SoftHsm,  # noqa: F811 - the fixture imported above
    label: str,  # noqa: F811
) -> None:
    with make(hsm, label, card=hsm.pin_token) as right:
        blob = right.wrap(SECRET, CONTEXT)
        with (
            make(hsm, label, card=hsm.pin_token, pin="wrong-pin-1234") as wrong,
            pytest.raises(UnlockFailedError, match="refused the PIN"),
        ):
            wrong.unwrap(blob, CONTEXT)
        with make(hsm, label, card=hsm.pin_token) as also_right:
            assert also_right.unwrap(blob, CONTEXT) == SECRET


def test_after_its_session_locks_a_provider_is_asked_again_while_another_holds_the_login(
    hsm: SoftHsm,  # noqa: F811 - the fixture imported above
    label: str,  # noqa: F811
) -> None:
    asked: list[SecretRequest] = []
    answers = [hsm.pin, "wrong-pin-1234"]

    def source(request: SecretRequest) -> str:
        asked.append(request)
        return answers[len(asked) - 1]

    with (
        make(hsm, label, card=hsm.pin_token) as other,
        make(hsm, label, card=hsm.pin_token) as mine,
    ):
        blob = other.wrap(SECRET, CONTEXT)  # the other account's provider holds the login
        mine.use_secret(source)
        assert mine.unwrap(blob, CONTEXT) == SECRET
        assert len(asked) == 1
        mine.forget_secrets()  # this account's session locked
        with pytest.raises(UnlockFailedError, match="refused the PIN"):
            mine.unwrap(blob, CONTEXT)
        assert len(asked) == 2
    with make(hsm, label, card=hsm.pin_token) as right:  # a right PIN resets the token's count
        assert right.unwrap(blob, CONTEXT) == SECRET
