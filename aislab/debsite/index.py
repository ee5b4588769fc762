"""This machine's apt lists of Debian bookworm: every package's control stanza, per suite.

Reads: /var/lib/apt/lists/*_Packages.lz4 of bookworm main, bookworm-updates and
bookworm-security (lz4, read through `/usr/lib/apt/apt-helper cat-file` via ais.run.run).
Fails: `WorldError` naming the list when a list is missing (run apt-get update), or
`ToolError` when apt-helper fails.
Returns: `read_index(path)` -> stanzas (dicts of the fields in FIELDS);
`load_index()` -> `Index` (release: bookworm's stanza per name; updated: the newest
stanza per name over bookworm-updates and bookworm-security when it is newer than the
release, as apt would choose it). Versions are compared with `dpkg --compare-versions`
semantics through apt_pkg when present, else by Debian's algorithm in `compare_versions`.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass

from ais.errors import WorldError
from ais.run import run

LISTS = "/var/lib/apt/lists"
FIELDS = ("Package", "Version", "Architecture", "Installed-Size", "Size", "Filename", "Priority", "Essential",
          "Depends", "Pre-Depends", "Recommends", "Provides", "Conflicts", "Breaks", "Replaces", "Section",
          "Multi-Arch", "Source", "Description")
SUITES = {
    "release": "*_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
    "updates": "*_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4",
    "security": "*_bookworm-security_main_binary-amd64_Packages.lz4",
}


def parse_stanzas(text: str, fields: tuple[str, ...] = FIELDS) -> list[dict[str, str]]:
    """Stanzas of a Packages (or control) file, keeping only `fields` (continuation lines joined)."""
    out = []
    for stanza in text.split("\n\n"):
        entry: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                if key in entry:
                    entry[key] += "\n" + line
                continue
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            if key in fields:
                entry[key] = value.strip()
            else:
                key = None
        if "Package" in entry:
            out.append(entry)
    return out


def read_index(path: str, fields: tuple[str, ...] = FIELDS) -> list[dict[str, str]]:
    """Stanzas of one compressed Packages list."""
    return parse_stanzas(run(["/usr/lib/apt/apt-helper", "cat-file", path], timeout=120).stdout, fields)


def find_list(pattern: str, lists: str = LISTS) -> str:
    found = sorted(glob.glob(f"{lists}/{pattern}"))
    if not found:
        raise WorldError(f"no apt list matches {lists}/{pattern}: run apt-get update")
    return found[0]


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256 if c else 0


def _compare_part(a: str, b: str) -> int:
    """Debian's comparison of an upstream version or revision."""
    while a or b:
        na = re.match(r"^[^0-9]*", a).group()
        nb = re.match(r"^[^0-9]*", b).group()
        a, b = a[len(na):], b[len(nb):]
        for i in range(max(len(na), len(nb))):
            ca, cb = _order(na[i] if i < len(na) else ""), _order(nb[i] if i < len(nb) else "")
            if ca != cb:
                return -1 if ca < cb else 1
        da = re.match(r"^[0-9]*", a).group()
        db = re.match(r"^[0-9]*", b).group()
        a, b = a[len(da):], b[len(db):]
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """-1, 0, 1 as Debian orders two versions (epoch, upstream, revision)."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), upstream, revision
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


@dataclass
class Index:
    """bookworm as released, and what apt would install with updates and security fixes."""

    release: dict[str, dict[str, str]]
    updated: dict[str, dict[str, str]]  # names whose newest version is newer than the release (or new)

    def stanza(self, name: str, level: int) -> dict[str, str]:
        """The stanza of name at patch level 1 (release) or 2 (release + updates + security)."""
        if level == 2 and name in self.updated:
            return self.updated[name]
        return self.release[name]

    def names(self, level: int) -> set[str]:
        return set(self.release) | (set(self.updated) if level == 2 else set())


def load_index(lists: str = LISTS) -> Index:
    release: dict[str, dict[str, str]] = {}
    for entry in read_index(find_list(SUITES["release"], lists)):
        if entry.get("Architecture") in ("amd64", "all"):
            release.setdefault(entry["Package"], entry)
    updated: dict[str, dict[str, str]] = {}
    for suite in ("updates", "security"):
        for entry in read_index(find_list(SUITES[suite], lists)):
            name = entry["Package"]
            if entry.get("Architecture") not in ("amd64", "all"):
                continue
            best = updated.get(name) or release.get(name)
            if best is None or compare_versions(entry["Version"], best["Version"]) > 0:
                updated[name] = entry
    return Index(release, updated)
