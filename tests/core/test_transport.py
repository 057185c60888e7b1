"""``SyncRequest`` and ``SyncResponse``: printing one shows its shape, never what it carries."""

from __future__ import annotations

import logging

from strongroom.transport import SyncRequest, SyncResponse

BODY = b"PAYLOAD-SHOULD-NOT-LEAK: the safe combination is 12-34-56"
TOKEN = "Bearer TOKEN-SHOULD-NOT-LEAK"  # noqa: S105 - the test token
COOKIE = "session=COOKIE-SHOULD-NOT-LEAK"


def renderings(value: object) -> list[str]:
    """Every way a request or response usually ends up as text: repr, str, formats, a log line."""
    record = logging.LogRecord(
        "strongroom", logging.DEBUG, __file__, 0, "%s %r", (value, value), None
    )
    return [
        repr(value),
        str(value),
        f"{value}",
        f"{value!r}",
        "%s" % (value,),  # noqa: UP031 - the old-style format is what logging uses
        repr([value]),
        repr({"sent": value}),
        logging.Formatter().format(record),
    ]


def test_a_request_prints_method_path_and_length_only() -> None:
    request = SyncRequest(
        "PUT",
        "/v1/accounts/alice/records",
        body=BODY,
        headers={"Authorization": TOKEN, "Cookie": COOKIE},
    )
    for text in renderings(request):
        assert f"SyncRequest(PUT /v1/accounts/alice/records, {len(BODY)} bytes)" in text
        for leak in ("SHOULD-NOT-LEAK", "Bearer", "Authorization", "Cookie", "combination"):
            assert leak not in text


def test_a_response_prints_status_and_length_only() -> None:
    response = SyncResponse(200, body=BODY, headers={"Set-Cookie": COOKIE, "Authorization": TOKEN})
    for text in renderings(response):
        assert f"SyncResponse(200, {len(BODY)} bytes)" in text
        for leak in ("SHOULD-NOT-LEAK", "Bearer", "Authorization", "Cookie", "combination"):
            assert leak not in text
