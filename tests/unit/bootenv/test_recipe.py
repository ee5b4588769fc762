"""The builder's file patterns and the boot environment's shell scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.bootenv.build import matches
from ais.run import run

HERE = Path(__file__).resolve().parents[3] / "ais" / "bootenv"

PATTERNS = [
    ("usr/lib/python3.11/os.py", "usr/lib/python3.11/**", True),
    ("usr/lib/python3.11/json/decoder.py", "usr/lib/python3.11/**", True),
    ("usr/lib/python3.11x/os.py", "usr/lib/python3.11/**", False),
    ("contracts.py", "*.py", True),
    ("planner/model.py", "*.py", False),  # a top-level pattern never reaches into a room
    ("client/ais-boot", "client/**", True),
    ("sbin/mkfs.ext4", "sbin/mkfs.ext4", True),
    ("sbin/mkfs.ext3", "sbin/mkfs.ext4", False),
    ("usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
     "usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", True),
]


@pytest.mark.parametrize("rel, pattern, expected", PATTERNS)
def test_patterns_match_whole_path_segments(rel, pattern, expected):
    assert matches(rel, pattern) is expected


@pytest.mark.parametrize("script", ["init.sh", "udhcpc.sh"])
def test_the_boot_scripts_are_posix_sh_and_shellcheck_clean(script):
    run(["shellcheck", "-s", "sh", str(HERE / script)])
