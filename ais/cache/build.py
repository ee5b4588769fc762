"""Build one image for real: staging root -> rpm transaction -> checked ext4 -> packed file.

Steps (each a small function, each timed):
1. `install_root`: a fresh staging root under cache/tmp/<id>/root, one
   `rpm --root` transaction installing the whole set (rpm orders it; scriptlets
   run chrooted in the root; see ais.rpmenv), then the root's rpmdb must list
   exactly the planned NEVRAs. When the site signs its RPMs (CACHE/site/rpm-key.asc,
   ais.rpmkey), the key is imported into the root's rpmdb first and the transaction
   runs with rpm's signature checking on: an RPM the site key did not sign cannot
   enter an image, and every image carries the key (rpm's gpg-pubkey entry, which
   is a key, not a package: ais.rpmenv.installed_nevras leaves it out).
2. `make_fs`: `mke2fs -q -t ext4 -b 4096 -d ROOT -L LABEL` into tmp/<id>/fs.img,
   sized from the content with headroom (the client grows it later); retried
   larger if the content did not fit.
3. `check_fs`: `e2fsck -fn` must pass, and the rpmdb *inside the image*
   (extracted with `debugfs rdump`) must list exactly the planned NEVRAs.
4. `pack`: the streamer's chunked format (ais.stream.pack.pack), then the file
   is fsynced and renamed into images/<id>.aisimg (Store.install).

Host tools: rpm, mke2fs, e2fsck, debugfs. Reads: Package records (their
`filename` relative to the repository) and the repository directory.
Fails with `BuildError` (missing RPM, wrong package set, an RPM not signed by
the site's key, failed fsck, disk full) or `ToolError` (a tool failed). Returns the manifest record of the image.
Everything it writes outside images/ is under tmp/<id>/ and removed on success.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ais import rpmkey
from ais.faults import pause_point
from ais.cache.store import Store, image_id
from ais.errors import BuildError, ToolError
from ais.model import Package
from ais.rpmenv import DBPATH, SignatureRefused, import_keys, installed_nevras, rpm_install
from ais.run import run
from ais.sizes import human

log = logging.getLogger("ais.cache.build")

BLOCK = 4096
MiB = 1 << 20
MKFS_ATTEMPTS = 3
INODE_RESERVE = 16384  # files the remainder may add (4 MiB of inode table, stored as zeros)


@dataclass
class BuiltFs:
    """A checked filesystem image in tmp/ and what it took to make it."""

    path: Path
    fs_bytes: int
    content_bytes: int
    nevras: frozenset[str]
    seconds: dict[str, float] = field(default_factory=dict)


def rpm_paths(packages: list[Package], repo_dir: Path) -> list[Path]:
    """Absolute RPM paths of packages; BuildError naming every missing file."""
    paths = [Path(repo_dir, p.filename) for p in packages]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BuildError(f"{len(missing)} RPM(s) missing from the repository {repo_dir} "
                         f"(run `make packages`): {', '.join(missing[:5])}")
    return paths


def check_set(found: set[str], planned: frozenset[str], where: str) -> None:
    """BuildError unless the rpmdb at `where` lists exactly the planned set."""
    if found != planned:
        extra, lacking = sorted(found - planned), sorted(planned - found)
        raise BuildError(f"rpmdb in {where} does not match the plan: "
                         f"extra {extra[:5]}, missing {lacking[:5]}")


def install_root(packages: list[Package], repo_dir: Path, root: Path, rpm_key: Path | None = None) -> None:
    """Install the whole set into a fresh root in one rpm transaction and check its rpmdb.
    rpm_key: the site's RPM key file; imported first, and every package must be signed by it."""
    paths = rpm_paths(packages, repo_dir)
    root.mkdir(parents=True)
    pause_point("rpm")
    if rpm_key is not None:
        import_keys(root, [rpm_key])
    try:
        rpm_install(root, paths, signed=rpm_key is not None)
    except SignatureRefused as err:
        raise BuildError(f"{err}; sign the repository with `ais site sign-rpms --repo {repo_dir}`") from err
    check_set(installed_nevras(root), frozenset(p.nevra for p in packages), f"staging root {root}")


def content_usage(root: Path) -> tuple[int, int]:
    """(bytes in 4 KiB blocks, inode count) of a directory tree, not following links."""
    blocks, inodes = 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        inodes += 1
        blocks += 1
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            inodes += 1
            if not os.path.islink(os.path.join(dirpath, name)) or st.st_size > 59:
                blocks += -(-st.st_size // BLOCK)
    return blocks * BLOCK, inodes


def inode_count(content_inodes: int) -> int:
    """Inodes for the image: its own files twice over plus a fixed reserve.

    The client installs the remainder into this filesystem after growing it, and
    growing adds inodes only with new block groups (none on a disk under 128 MiB),
    so the room for the remainder's files must be made here. Unused inode tables
    are in-use zero blocks: they cost the client a zeroing, not stored bytes.
    """
    return content_inodes * 2 + INODE_RESERVE


def fs_size(content_bytes: int, inodes: int, attempt: int = 0) -> int:
    """Filesystem bytes for the content: 25% headroom, inode tables, journal, metadata."""
    journal = 4 * MiB if content_bytes < 96 * MiB else 16 * MiB if content_bytes < 900 * MiB else 64 * MiB
    size = content_bytes * 5 // 4 + inodes * 256 + journal + 8 * MiB
    size <<= attempt
    return -(-size // MiB) * MiB


def make_fs(root: Path, image: Path, label: str) -> tuple[int, int]:
    """mke2fs -d root into image; returns (filesystem bytes, content bytes)."""
    content, inodes = content_usage(root)
    for attempt in range(MKFS_ATTEMPTS):
        size = fs_size(content, inode_count(inodes), attempt)
        image.unlink(missing_ok=True)
        argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", str(BLOCK), "-N", str(inode_count(inodes)), "-E", "nodiscard",
                "-d", str(root), "-L", label, str(image), f"{size // 1024}k"]
        try:
            run(argv)
            return size, content
        except ToolError as err:
            if "No space left on device" in err.stderr or "Could not allocate" not in err.stderr:
                raise
            log.info("content did not fit in %d MiB, retrying larger", size // MiB)
    raise BuildError(f"mke2fs could not fit {content // MiB} MiB of content from {root}")


def check_fs(image: Path, planned: frozenset[str], scratch: Path) -> None:
    """e2fsck -fn must pass, and the image's own rpmdb must list exactly the planned set."""
    proc = run(["e2fsck", "-fn", str(image)], check=False)
    if proc.returncode != 0:
        raise BuildError(f"e2fsck -fn {image} exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    dest = scratch / DBPATH.lstrip("/")
    dest.parent.mkdir(parents=True)
    proc = run(["debugfs", "-R", f"rdump {DBPATH} {dest.parent}", str(image)])
    if not dest.is_dir():
        raise BuildError(f"image {image} has no rpm database at {DBPATH}: {proc.stderr[-500:]}")
    check_set(installed_nevras(scratch), planned, f"image {image}")


def build_fs(packages: list[Package], repo_dir: Path, work: Path, label: str,
             rpm_key: Path | None = None) -> BuiltFs:
    """Steps 1-3 in work/ (which must be empty): a checked ext4 image of the installed set."""
    planned = frozenset(p.nevra for p in packages)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    root = work / "root"
    install_root(packages, repo_dir, root, rpm_key)
    seconds["rpm"] = time.monotonic() - started
    pause_point("mkfs")
    started = time.monotonic()
    image = work / "fs.img"
    size, content = make_fs(root, image, label)
    seconds["mkfs"] = time.monotonic() - started
    started = time.monotonic()
    check_fs(image, planned, work / "check")
    seconds["check"] = time.monotonic() - started
    return BuiltFs(image, size, content, planned, seconds)


def pack_fs(built: BuiltFs, out: Path, iid: str) -> object:
    """Pack a checked filesystem image in the streamer's format; returns its ImageHeader."""
    from ais.stream.pack import pack

    pause_point("pack")
    return pack(built.path, out, image_id=iid, packages=sorted(built.nevras))


def build_image(store: Store, packages: list[Package], repo_dir: str | os.PathLike, *,
                key: str = "", doing: Callable[[str], None] = lambda what: None) -> dict:
    """Build, check, pack and install one image; returns its manifest record.

    A no-op apart from reading when the image is already stored (the caller checks
    its hashes with ais.cache.verify before trusting it). `doing` is told each step
    as it starts (the rebuild's progress shows it).
    """
    from ais.cache.verify import header_record

    packages = sorted(packages)
    iid = image_id(packages)
    work = store.work_dir(iid)
    started = time.monotonic()
    try:
        doing(f"rpm, mke2fs, e2fsck ({len(packages)} packages)")
        site_rpm_key = rpmkey.public_path(store.root)
        built = build_fs(packages, Path(repo_dir).absolute(), work, label=f"ais-{iid[:12]}",
                         rpm_key=site_rpm_key if site_rpm_key.exists() else None)
        t0 = time.monotonic()
        packed = work / "image.aisimg"
        doing(f"pack ({human(built.fs_bytes)} filesystem)")
        header = pack_fs(built, packed, iid)
        built.seconds["pack"] = time.monotonic() - t0
        pause_point("install")
        doing("install into the cache")
        store.install(packed, iid)
    except OSError as err:
        raise _as_build_error(err, store, iid) from err
    except ToolError as err:
        if disk_full(err.stderr, store.root):
            raise _as_build_error(OSError(errno.ENOSPC, err.stderr.strip()[-300:]), store, iid) from err
        raise
    finally:
        try:
            store.discard(work)  # deleted in the background while the next image builds
        except OSError:
            shutil.rmtree(work, ignore_errors=True)
    record = header_record(store, iid, header)
    record.update(key=key, packages=sorted(built.nevras), fs_bytes=built.fs_bytes,
                  content_bytes=built.content_bytes,
                  build_seconds=round(time.monotonic() - started, 3),
                  step_seconds={k: round(v, 3) for k, v in built.seconds.items()})
    return record


FULL_MARKERS = ("No space left", "disk is full", "more space on the")
LOW_FREE_BYTES = 16 * MiB


def disk_full(stderr: str, where: Path) -> bool:
    """Did a tool fail because the cache filesystem is full? Its message says so, or
    the filesystem has almost nothing left (rpm and sqlite word it many ways)."""
    if any(marker in stderr for marker in FULL_MARKERS):
        return True
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize < LOW_FREE_BYTES


def _as_build_error(err: OSError, store: Store, iid: str) -> BuildError:
    if err.errno == errno.ENOSPC:
        st = os.statvfs(store.root)
        return BuildError(f"no space left on the cache filesystem at {store.root} while building "
                          f"image {iid[:12]} ({st.f_bavail * st.f_frsize // MiB} MiB free); "
                          f"the published cache is unchanged: free space or lower --budget")
    return BuildError(f"building image {iid[:12]} failed: {err}")
