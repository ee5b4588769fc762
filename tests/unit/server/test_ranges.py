"""Range header parsing: literal answers for each form RFC 9110 allows, and the garbage it must ignore."""

import pytest

from ais.server.ranges import RangeNotSatisfiable, byte_range


@pytest.mark.parametrize("header,size,expected", [
    (None, 100, (0, 100, False)),
    ("", 100, (0, 100, False)),
    ("bytes=0-0", 100, (0, 1, True)),
    ("bytes=0-99", 100, (0, 100, True)),
    ("bytes=10-", 100, (10, 90, True)),
    ("bytes=90-500", 100, (90, 10, True)),  # end clipped to the file
    ("bytes=-10", 100, (90, 10, True)),
    ("bytes=-500", 100, (0, 100, True)),
    ("bytes=5-3", 100, (0, 100, False)),  # invalid: ignored
    ("bytes=0-1,5-6", 100, (0, 100, False)),  # several ranges: whole file is a valid answer
    ("items=0-5", 100, (0, 100, False)),
    ("bytes=-", 100, (0, 100, False)),
    ("bytes=abc", 100, (0, 100, False)),
])
def test_byte_range(header, size, expected):
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header,size", [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100),
                                         ("bytes=0-", 0)])
def test_unsatisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)
