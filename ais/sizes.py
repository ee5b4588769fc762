"""Human sizes: parse `20G`, `500M`, `4096` (bytes) and print them back.

Reads: a string (binary units: K=1024, M, G, T; an optional trailing `B` or
`iB`). Fails with `UsageError` on anything else. Returns an int of bytes, or
a short string for `human`.
"""

from __future__ import annotations

import argparse
import re

from ais.errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in `text`.

    >>> parse_size("20G"), parse_size("500M"), parse_size("1.5K"), parse_size("7")
    (21474836480, 524288000, 1536, 7)
    """
    match = _PATTERN.match(str(text))
    if not match:
        raise UsageError(f"bad size {text!r}: use a number with an optional unit, e.g. 20G or 500M")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def size_arg(text: str) -> int:
    """parse_size for argparse `type=`: a bad size is a usage error (exit 2), not a traceback."""
    try:
        return parse_size(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def human(n: int | float) -> str:
    """Short binary size: 1.5G, 320M, 12K, 900B."""
    n = float(n)
    for unit in ("B", "K", "M", "G"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"
