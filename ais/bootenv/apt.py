"""Debian packages for the boot environment, through apt's own tools, never installed.

What it does: `candidates(names)` asks `apt-cache show` for the version apt
would install of each package, with its size and SHA256 (known before any
download, so the boot environment's key is computed without downloading);
`kernel_package(meta)` follows a metapackage (linux-image-amd64) to the
versioned package it depends on. `fetch(debs, dir)` brings the .deb files into the
download directory, those not there yet in one `apt-get download NAME=VERSION ...`,
and checks the SHA256 of every one (a mismatch is removed and refused).
`unpack(deb, root)` extracts a package with `dpkg-deb -x` (no scripts run).

Reads: apt's package lists (`apt-get update` must have run). Fails with
`WorldError` naming the package when apt does not know it or a download does
not match, `ToolError` when apt-get or dpkg-deb fails. Returns `Deb` records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ais.errors import WorldError
from ais.files import file_sha256
from ais.run import run


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    arch: str
    sha256: str
    depends: str = ""

    @property
    def filename(self) -> str:
        """The name apt-get download gives the file (an epoch's ':' becomes %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def candidates(names: list[str]) -> dict[str, Deb]:
    """name -> the candidate Deb apt would install, for each name; all asked in one apt-cache call."""
    proc = run(["apt-cache", "show", "--no-all-versions", *names], check=False)
    found = {}
    for fields in _stanzas(proc.stdout):
        if "Package" in fields and "SHA256" in fields:
            found[fields["Package"]] = Deb(fields["Package"], fields["Version"], fields["Architecture"],
                                          fields["SHA256"], fields.get("Depends", ""))
    missing = [n for n in names if n not in found]
    if missing:
        raise WorldError(f"apt knows no installable package {', '.join(missing)} "
                         f"(run apt-get update; is this Debian bookworm?): {proc.stderr.strip()[-300:]}")
    return found


def kernel_package(meta: Deb) -> str:
    """The versioned kernel package a linux-image metapackage depends on."""
    for alternative in meta.depends.split(","):
        name = alternative.split("|")[0].split("(")[0].strip()
        if name.startswith("linux-image-"):
            return name
    raise WorldError(f"{meta.name} {meta.version} depends on no linux-image-* package: {meta.depends!r}")


def fetch(wanted: list[Deb], debs: Path) -> list[Path]:
    """The .deb files in `debs`, those absent downloaded in one `apt-get download`, every SHA256 checked."""
    debs.mkdir(parents=True, exist_ok=True)
    absent = [d for d in wanted if not (debs / d.filename).exists()]
    if absent:
        run(["apt-get", "download", "-q", *(f"{d.name}={d.version}" for d in absent)], cwd=debs, timeout=900)
    paths = []
    for deb in wanted:
        path = debs / deb.filename
        if not path.exists():
            raise WorldError(f"apt-get download {deb.name}={deb.version} left no {path.name} in {debs}")
        digest = file_sha256(path)
        if digest != deb.sha256:
            path.unlink()  # never kept: the next build downloads it again
            raise WorldError(f"{path}: SHA256 {digest[:16]}... is not the {deb.sha256[:16]}... "
                             f"apt's lists give for {deb.name} {deb.version} (removed)")
        paths.append(path)
    return paths


def unpack(deb: Path, root: Path) -> None:
    run(["dpkg-deb", "-x", str(deb), str(root)], timeout=300)
