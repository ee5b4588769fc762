"""Just enough ELF to assemble a boot environment: shared-library needs and kernel-module info.

What it does: `needed(path)` lists the DT_NEEDED sonames of a 64-bit
little-endian ELF file (what the dynamic loader must find), `interpreter(path)`
its PT_INTERP, and `modinfo(path)` the key=value pairs of a kernel module's
.modinfo section (depends=, alias=, softdep=...). `is_elf(path)` tells an ELF
file from anything else.

Why not readelf/modinfo/depmod: Debian's kernel package ships no modules.dep
(depmod runs at install), kmod may be absent, and these few fields are read
the same way everywhere with no tool.

Reads: files. Fails with `BuildError` for a file that is not the ELF it
claims to be (truncated, 32-bit, big-endian). Returns plain lists and dicts.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ais.errors import BuildError

MAGIC = b"\x7fELF"
DT_NEEDED, DT_STRTAB, SHT_DYNAMIC, PT_INTERP = 1, 5, 6, 3


def is_elf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


class _Elf:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.data = self.path.read_bytes()
        d = self.data
        if d[:4] != MAGIC or d[4] != 2 or d[5] != 1:
            raise BuildError(f"{self.path}: not a 64-bit little-endian ELF file")
        try:
            (self.phoff, self.shoff) = struct.unpack_from("<QQ", d, 0x20)
            (self.phentsize, self.phnum, self.shentsize, self.shnum, self.shstrndx) = struct.unpack_from("<HHHHH", d, 0x36)
            self.sections = [struct.unpack_from("<IIQQQQIIQQ", d, self.shoff + i * self.shentsize)
                             for i in range(self.shnum)]
        except struct.error as err:
            raise BuildError(f"{self.path}: truncated ELF file") from err

    def section_bytes(self, index: int) -> bytes:
        _, _, _, _, offset, size, *_ = self.sections[index]
        return self.data[offset:offset + size]

    def section_named(self, name: str) -> bytes | None:
        if not self.sections:
            return None
        names = self.section_bytes(self.shstrndx)
        for i, sec in enumerate(self.sections):
            start = sec[0]
            if names[start:names.index(b"\0", start)].decode() == name:
                return self.section_bytes(i)
        return None

    def segments(self):
        for i in range(self.phnum):
            p_type, _, p_offset, _, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", self.data, self.phoff + i * self.phentsize)
            yield p_type, self.data[p_offset:p_offset + p_filesz]


def needed(path: str | Path) -> list[str]:
    """The sonames the file asks the dynamic loader for (empty for a static file)."""
    elf = _Elf(path)
    for sec in elf.sections:
        if sec[1] != SHT_DYNAMIC:
            continue
        dynamic = elf.data[sec[4]:sec[4] + sec[5]]
        strtab = elf.section_bytes(sec[6])  # sh_link: the string table of .dynamic
        entries = [struct.unpack_from("<qQ", dynamic, i) for i in range(0, len(dynamic) - 15, 16)]
        return [strtab[v:strtab.index(b"\0", v)].decode() for tag, v in entries if tag == DT_NEEDED]
    return []


def interpreter(path: str | Path) -> str | None:
    """The program interpreter (dynamic loader) path, or None for a static file or a library."""
    for p_type, body in _Elf(path).segments():
        if p_type == PT_INTERP:
            return body.rstrip(b"\0").decode()
    return None


def modinfo(path: str | Path) -> dict[str, list[str]]:
    """A kernel module's .modinfo: key -> every value given for it (alias= repeats)."""
    body = _Elf(path).section_named(".modinfo")
    if body is None:
        raise BuildError(f"{path}: no .modinfo section: not a kernel module")
    info: dict[str, list[str]] = {}
    for field in body.split(b"\0"):
        key, sep, value = field.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info
