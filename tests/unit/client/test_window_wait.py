"""What the client makes of a server's answer to a plan request while a reboot window may be full
(ais.client.api.window_wait): only a 503 with Retry-After in whole seconds is waited on, for 1 to 60 s
(never a busy loop, never an hour on a server's word); every other answer is final as before."""

import pytest

from ais.client.api import MAX_WINDOW_WAIT, window_wait

CASES = [
    ("the window's answer", 503, {"retry-after": "10"}, 10.0),
    ("Retry-After 0 is still a pause", 503, {"retry-after": "0"}, 1.0),
    ("a long Retry-After is capped", 503, {"retry-after": "3600"}, float(MAX_WINDOW_WAIT)),
    ("an absurd Retry-After is capped", 503, {"retry-after": "9" * 40}, float(MAX_WINDOW_WAIT)),
    ("padded with blanks", 503, {"retry-after": " 5 "}, 5.0),
    ("503 without Retry-After (an image check) is final", 503, {}, None),
    ("an HTTP date is not waited on", 503, {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ("negative", 503, {"retry-after": "-5"}, None),
    ("fractional", 503, {"retry-after": "1.5"}, None),
    ("digits that are not ASCII", 503, {"retry-after": "\u00b2"}, None),
    ("another status with Retry-After is final", 429, {"retry-after": "10"}, None),
    ("a 500 is final", 500, {"retry-after": "10"}, None),
    ("a plan is a plan", 200, {}, None),
]


@pytest.mark.parametrize("status, headers, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_window_wait(status, headers, expected):
    assert window_wait(status, headers) == expected
