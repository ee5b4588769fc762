"""Install the remainder: fetch every RPM of the plan, check it, install all in ONE transaction.

What it does: `install_remainder(api, plan, root)` first checks that the
target holds exactly the image's packages (the rpmdb inside the imaged
filesystem; empty for a fresh filesystem), then downloads every RPM the plan
lists into a staging directory on the target's own disk (`<root>/.ais-staging`,
not RAM), checking each file's sha256 and size against the plan before it is
used (an RPM the image step already fetched from the peers, in the session
directory's rpms/ with the plan's size and sha256, is used from there), then installs them all with `ais.rpmenv.rpm_install(root, paths)`: one
`rpm --root` transaction, scriptlets running chrooted in the target, failing
scriptlets caught. Both directories are removed afterwards.

Signed RPMs: when the plan carries `rpm_keys` (the site's OpenPGP public keys; the plan itself
is signed by the site key), `check_signatures` checks every package's header signature against
them right after the plan, before anything is written (only each RPM's header is fetched); at
install they are imported into the target's rpmdb first (a no-op when the
image carries them already; a fresh filesystem's new rpmdb otherwise), and the transaction runs
with rpm's signature checking on: rpm reads every package and checks its signature against the
rpmdb's keys before it installs any, so one unsigned, signed by another key, or with a signature
that does not match makes rpm refuse the whole transaction (`ais.rpmenv.SignatureRefused`, exit 1,
naming each package and why); the target's packages are then the image's, unchanged.

Reads: the plan, the server (through `Api`). Fails with `ClientError` (a digest
mismatch: nothing is installed; the image's rpmdb is not what the plan says; a package's
signature refused) or `ToolError`/`BuildError` from rpm. Returns the NEVRAs installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from ais.client.api import Api
from ais.client.session import say
from ais.errors import ClientError
from ais.faults import pause_point
from ais.files import file_sha256
from ais.rpmenv import SignatureRefused, import_keys, installed_nevras, rpm_install

STAGING = ".ais-staging"


def check_image_content(plan: dict, root: str) -> None:
    """The rpmdb in the target must list exactly the image's packages."""
    expected = set(plan["image"]["packages"]) if plan.get("image") else set()
    found = installed_nevras(root) if Path(root, "var/lib/rpm").is_dir() else set()
    if found != expected:
        raise ClientError(f"the target's rpm database does not match image "
                          f"{(plan.get('image') or {}).get('id', 'none')[:12]}: "
                          f"extra {sorted(found - expected)[:5]}, missing {sorted(expected - found)[:5]}")


def fetch_packages(api: Api, plan: dict, staging: Path, fetched: Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Every RPM of the plan, checked; returns their paths in plan order. One already in `fetched`
    (the image step's, from the peers: ais.client.rpmpeers) with the plan's size and sha256 is used
    where it is; every other one is downloaded from the server into staging. progress, when given,
    is told (packages ready, packages in all) after each."""
    staging.mkdir(parents=True, exist_ok=True)
    paths, present = [], 0
    for n, pkg in enumerate(plan["packages"]):
        name = Path(pkg["filename"]).name
        if name != pkg["filename"] or not name.endswith(".rpm"):
            raise ClientError(f"the plan names a package file {pkg['filename']!r} that is not a plain .rpm name")
        ready = fetched / name if fetched is not None else None
        if ready is not None and holds(ready, pkg.get("size"), pkg["sha256"]):
            paths.append(ready)
            present += 1
        else:
            dest = staging / name
            api.download(pkg["url"], dest, sha256=pkg["sha256"], size=pkg.get("size"))
            paths.append(dest)
            if n == 0:
                pause_point("client-rpm")
        if progress is not None:
            progress(len(paths), len(plan["packages"]))
    if fetched is not None:
        say(f"rpm: {present} of {len(paths)} packages were fetched from the peers and check; "
            f"{len(paths) - present} downloaded from the server")
    return paths


def holds(path: Path, size: int | None, sha256: str) -> bool:
    """Whether path is a file of the plan's size (when it gives one) whose sha256 is the plan's."""
    try:
        return path.is_file() and (size is None or path.stat().st_size == size) and file_sha256(path) == sha256
    except OSError:
        return False


def check_room(plan: dict, root: str) -> None:
    """Enough free inodes and bytes on the target for the remainder, said before rpm says it worse."""
    st = os.statvfs(root)
    inodes = sum(int(p.get("file_count") or 0) for p in plan["packages"]) + 64
    space = sum(int(p.get("installed_size") or 0) for p in plan["packages"])
    free_bytes = st.f_bavail * st.f_frsize
    if st.f_favail < inodes:
        raise ClientError(f"the target filesystem has {st.f_favail} free inodes, the remainder needs about {inodes}: "
                          "the image has too few inodes to grow into (its inode count is fixed per block group); "
                          "use a larger disk or rebuild the image with more inodes")
    if free_bytes < space:
        raise ClientError(f"the target filesystem has {free_bytes >> 20} MiB free, the remainder needs "
                          f"{space >> 20} MiB: use a larger disk")


def write_keys(plan: dict, staging: Path) -> list[Path]:
    """The plan's armored RPM keys as files in staging (what `rpm --import` reads)."""
    paths = []
    for n, text in enumerate(plan.get("rpm_keys") or ()):
        path = staging / f"rpm-key-{n}.asc"
        path.write_text(text)
        paths.append(path)
    return paths


def check_signatures(api: Api, plan: dict, workdir: Path) -> int:
    """Before anything is written: every package's header signature against the plan's RPM keys (only
    each RPM's header is fetched: ais.rpmenv.header_length), so an unsigned package, one signed by
    another key or with a damaged signature stops the reinstall while the target is untouched. The
    payload is covered by the header's digests, which rpm checks again at install. The number checked."""
    if not plan.get("rpm_keys") or not plan["packages"]:
        return 0
    from ais.rpmenv import header_signatures

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        keys = write_keys(plan, workdir)
        headers = []
        for pkg in plan["packages"]:
            path = workdir / f"{Path(pkg['filename']).name}.header"
            path.write_bytes(api.rpm_header(pkg["url"]))
            headers.append(path)
        states = header_signatures(headers, keys)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    refused = [f"{path.name.removesuffix('.header')}: {state}" for path, state in states.items() if state != "signed"]
    if refused:
        raise SignatureRefused(f"{len(refused)} of {len(headers)} packages of the plan are not signed by the site's "
                               f"RPM key, so nothing was written: {'; '.join(refused[:10])}")
    return len(headers)


def install_remainder(api: Api, plan: dict, root: str, fetched: Path | None = None,
                      progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Check the image's rpmdb, fetch (or find in `fetched`) and install the remainder; its NEVRAs.
    progress: told the packages fetched so far (fetch_packages)."""
    check_image_content(plan, root)
    if not plan["packages"]:
        return []
    check_room(plan, root)
    staging = Path(root, STAGING)
    try:
        paths = fetch_packages(api, plan, staging, fetched if fetched is not None and fetched.is_dir() else None,
                               progress)
        keys = write_keys(plan, staging)
        if keys:
            import_keys(root, keys)
        say(f"rpm: installing {len(paths)} packages in one transaction"
            + (", each checked against the site's RPM key" if keys else ""))
        rpm_install(root, paths, signed=bool(keys))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if fetched is not None:
            shutil.rmtree(fetched, ignore_errors=True)
    return [p["nevra"] for p in plan["packages"]]
