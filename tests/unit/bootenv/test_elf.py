"""DT_NEEDED and PT_INTERP read from real ELF files of this machine; bad files are clear errors."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from ais.bootenv import elf
from ais.errors import BuildError

PYTHON = Path("/usr/bin/python3.11")  # Debian's, as in the boot environment
BUSYBOX = Path(shutil.which("busybox") or "/bin/busybox")  # busybox-static (the Makefile installs it)


def test_a_dynamic_program_names_its_libraries_and_loader():
    assert "libc.so.6" in elf.needed(PYTHON)
    assert elf.interpreter(PYTHON) == "/lib64/ld-linux-x86-64.so.2"


def test_a_static_program_needs_nothing():
    assert elf.needed(BUSYBOX) == [] and elf.interpreter(BUSYBOX) is None


def test_is_elf_tells_elf_from_text(tmp_path):
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert elf.is_elf(PYTHON) and not elf.is_elf(text) and not elf.is_elf(tmp_path / "absent")


def bad_files(tmp_path):
    head = PYTHON.read_bytes()
    return {
        "text": b"#!/bin/sh\necho hello\n",
        "32-bit": head[:4] + b"\x01" + head[5:200],
        "big-endian": head[:5] + b"\x02" + head[6:200],
        "truncated": head[:80],
        "section table cut off": head[:0x20] + struct.pack("<QQ", 0, 1 << 20) + head[0x30:4096],
    }


@pytest.mark.parametrize("case", ["text", "32-bit", "big-endian", "truncated", "section table cut off"])
def test_a_file_that_is_not_a_64_bit_elf_is_refused(tmp_path, case):
    path = tmp_path / case.replace(" ", "-")
    path.write_bytes(bad_files(tmp_path)[case])
    with pytest.raises(BuildError, match="ELF"):
        elf.needed(path)


def test_modinfo_of_a_program_says_it_is_no_module():
    with pytest.raises(BuildError, match="not a kernel module"):
        elf.modinfo(PYTHON)
