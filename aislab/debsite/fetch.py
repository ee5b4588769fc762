"""Download the selected .debs with apt-get, once (a cache in build/debs, never committed).

Reads: (name, Debian version) pairs, and the apt lists through apt-get itself.
Writes: `<debs>/<name>_<version with ':' as %3a>_<arch>.deb`, the name apt-get download
gives; a deb already there is not fetched again.
Fails: `WorldError` naming the packages when apt-get fails (network, a version the lists
no longer have: run apt-get update, then `make real-site` again) or a deb is missing after it.
Returns: {(name, version): path of the .deb}. Progress (debs fetched of those missing) goes
to stderr through ais.progress.
"""

from __future__ import annotations

from pathlib import Path

from ais import progress
from ais.errors import ToolError, WorldError
from ais.run import run

BATCH = 40


def deb_name(name: str, version: str, arch: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def fetch(wanted: dict[tuple[str, str], str], debs: Path, echo=progress.line) -> dict[tuple[str, str], Path]:
    """wanted: (name, version) -> Debian arch ('amd64' or 'all')."""
    debs.mkdir(parents=True, exist_ok=True)
    paths = {key: debs / deb_name(*key, arch) for key, arch in wanted.items()}
    todo = sorted(key for key, path in paths.items() if not path.is_file())
    if not todo:
        return _all_there(paths, debs)
    with progress.task("apt-get download", len(todo), "debs") as bar:
        for i in range(0, len(todo), BATCH):
            batch = todo[i:i + BATCH]
            echo(f"apt-get download: {len(batch)} debs ({i + len(batch)}/{len(todo)} to fetch)")
            try:
                run(["apt-get", "download", "-q", *(f"{n}={v}" for n, v in batch)], cwd=debs, timeout=1800)
            except ToolError as err:
                raise WorldError(f"apt-get download failed for {', '.join(f'{n}={v}' for n, v in batch)}: {err}; "
                                 "if a version is gone, run apt-get update and `make real-site` again") from err
            bar.advance(len(batch))
    return _all_there(paths, debs)


def _all_there(paths: dict[tuple[str, str], Path], debs: Path) -> dict[tuple[str, str], Path]:
    missing = [f"{n}={v}" for (n, v), p in paths.items() if not p.is_file()]
    if missing:
        raise WorldError(f"apt-get download left these debs missing in {debs}: {', '.join(missing)}")
    return paths
