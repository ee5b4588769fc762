"""HTTP Range headers (RFC 9110 section 14): one byte range, or the whole file.

Reads: the Range header value and the file size. Fails with `RangeNotSatisfiable`
when the single range asked for lies outside the file (the caller answers 416).
Returns (start, length) of the bytes to send, and whether it is partial. A
header it does not understand (another unit, several ranges, garbage) means
"send everything", which RFC 9110 allows a server to do.

>>> byte_range("bytes=0-9", 100)
(0, 10, True)
>>> byte_range("bytes=-10", 100)
(90, 10, True)
>>> byte_range(None, 100)
(0, 100, False)
"""

from __future__ import annotations

import re

_SINGLE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """The range lies outside the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int, bool]:
    """(start, length, partial) for a Range header against a file of `size` bytes."""
    if not header:
        return 0, size, False
    match = _SINGLE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return 0, size, False  # several ranges or another unit: the whole file is a valid answer
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0:
            raise RangeNotSatisfiable(f"empty suffix range of a {size}-byte file")
        count = min(count, size)
        return size - count, count, True
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, the file has {size} bytes")
    end = size - 1 if not last else min(int(last), size - 1)
    if end < start:
        return 0, size, False  # syntactically invalid: ignore the header
    return start, end - start + 1, True
