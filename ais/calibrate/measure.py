"""Measure this machine's rpm and imaging speed the way the client works, and fit the cost model.

What it does: installs real package sets (every configuration of the site, plus
unions of pairs) the way the client does, each onto a fresh ext4 on a loop device
(RPMs copied onto the target and sha256-checked, one `rpm --root` transaction,
the copies removed, unmount, which writes back what rpm wrote), times them, and
fits `transaction + Σ per-package costs` by non-negative least squares; then
builds ext4 images of the smallest and largest configuration, packs them, and runs
the client's own disk steps on a loop device (fresh mkfs, image write, grow,
mount + rpm -Va + record + unmount + fsck), twice, keeping each step's fastest
time, and fits the image, fresh-filesystem and finish terms through the two
points; last, it times host-file writes.
Why a loop device and not a directory: on a virtual disk, a directory on the
root filesystem pays for the writeback of every earlier sample (and of deleting
it), which made rpm look about twice as slow as in the client at 100+ MiB
configurations; the client installs onto its own (here: loop) disk.
What it reads: the `Site` (configurations and their real RPMs) and the repository.
Host tools: rpm, mke2fs, losetup, mount, resize2fs, tune2fs, e2fsck (root).
What it fails on: `ToolError`/`BuildError` from rpm, mke2fs, losetup or the
writer; a site with no configuration is `BadInput`.
What it returns: a `CostModel` with measured coefficients, and the samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from msgspec.structs import replace

from ais.calibrate.fit import fit_image, fit_rpm
from ais.cost import CostModel
from ais.errors import BadInput
from ais.files import write_atomic
from ais.model import Configuration, Package, Site
from ais.rpmenv import rpm_install, verify
from ais.run import run

log = logging.getLogger("ais.calibrate")
DISK_BYTES = 1 << 30  # the target disk the image steps are timed on (sparse)


@dataclass(frozen=True)
class RpmSample:
    """One measured transaction: its package totals and wall seconds."""

    packages: int
    installed_bytes: int
    files: int
    scriptlets: int
    seconds: float


@dataclass(frozen=True)
class ImageSample:
    """One configuration reinstalled from its image onto a loop device, phase by phase."""

    installed_bytes: int
    stored_bytes: int
    files: int  # installed files of the configuration
    seconds: float  # write_image onto the device, fsync included
    grow_seconds: float  # resize2fs + new UUID
    finish_seconds: float  # mount, rpm -Va, install record, unmount, e2fsck -fn (after imaging)
    fresh_fs_seconds: float  # mkfs of an empty filesystem on the same device
    warm_finish_seconds: float  # the same finish right after installing the set by rpm


def package_sets(site: Site, max_sets: int) -> list[tuple[Package, ...]]:
    """Configurations, then unions of two without version clashes: varied sizes for the fit."""
    confs = [c.packages for c in site.configurations]
    unions = []
    for a, b in itertools.combinations(site.configurations, 2):
        merged = {p.name: p for p in a.packages}
        if all(merged.get(p.name, p) == p for p in b.packages):
            merged.update((p.name, p) for p in b.packages)
            unions.append(tuple(sorted(merged.values())))
    return (confs + unions)[:max_sets]


def sample_disk_bytes(packages: tuple[Package, ...], at_least: int) -> int:
    """A (sparse) target big enough for the installed set, its staged RPMs and ext4's overhead."""
    need = 2 * sum(p.installed_size for p in packages) + sum(p.size for p in packages) + (64 << 20)
    return max(at_least, -(-need // (64 << 20)) * (64 << 20))


def stage_rpms(paths: list[Path], staging: Path) -> list[Path]:
    """Copy the RPMs onto the target with a sha256 of each, as the client's download does."""
    staging.mkdir(parents=True)
    staged = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(staging / path.name, "wb") as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
        staged.append(staging / path.name)
    return staged


def install_like_client(paths: list[Path], device: str, mountpoint: Path) -> float:
    """Seconds to stage and install `paths` in one transaction onto the fresh filesystem on
    device, remove the staged copies and unmount (the write-back of what rpm wrote)."""
    from ais.client import disk
    from ais.client.packages import STAGING

    disk.mount(device, str(mountpoint))
    mounted = True
    try:
        started = time.monotonic()
        staging = mountpoint / STAGING
        rpm_install(mountpoint, stage_rpms(paths, staging))
        shutil.rmtree(staging)
        disk.unmount(str(mountpoint))
        mounted = False
        return time.monotonic() - started
    finally:
        if mounted:
            disk.unmount(str(mountpoint))


def measure_rpm(packages: tuple[Package, ...], repo: Path, work: Path, rounds: int = 2,
                disk_bytes: int = DISK_BYTES) -> RpmSample:
    """Best of `rounds` installs onto a fresh loop-mounted ext4, like the client's install
    (plus its unmount); the minimum is the least disturbed by other load."""
    from ais.client import disk

    times = []
    size = sample_disk_bytes(packages, disk_bytes)
    for _ in range(rounds):
        area = Path(tempfile.mkdtemp(prefix="rpm-", dir=work))
        try:
            with loop_device(area / "disk", size) as device:
                disk.make_fresh_fs(device, "calibrate")
                times.append(install_like_client([repo / p.filename for p in packages], device, area / "mnt"))
        finally:
            shutil.rmtree(area, ignore_errors=True)
    seconds = min(times)
    return RpmSample(len(packages), sum(p.installed_size for p in packages),
                     sum(p.file_count for p in packages), sum(p.scriptlets for p in packages), seconds)


def measure_image(conf: Configuration, repo: Path, work: Path, disk_bytes: int, rounds: int = 2) -> ImageSample:
    """Build and pack conf's image, then run the client's disk steps on a loop device.

    The steps are the client's own (ais.client.disk), so what is timed here is
    what a reinstall spends outside rpm. They run `rounds` times on a fresh
    device each; every step keeps its fastest time (least disturbed by writeback).
    """
    from ais.cache.build import make_fs
    from ais.client import disk
    from ais.stream.pack import pack
    from ais.stream.writer import write_image

    area = Path(tempfile.mkdtemp(prefix="image-", dir=work))
    try:
        rpm_install(area / "root", [repo / p.filename for p in conf.packages])
        make_fs(area / "root", area / "fs.img", "calibrate")
        header = pack(area / "fs.img", area / "img.aisimg", image_id="calibrate", packages=sorted(conf.nevras))
        size = sample_disk_bytes(conf.packages, disk_bytes)
        steps = []
        for n in range(rounds):
            with loop_device(area / f"disk{n}", size) as device:
                fresh = timed(disk.make_fresh_fs, device, "calibrate")
                os.sync()  # keep earlier dirty pages out of the timed write
                seconds = timed(write_image, area / "img.aisimg", device, journal_path=None)
                grow = timed(disk.grow, device) + timed(disk.new_uuid, device)
                finish = timed(finish_like_client, device, area / f"mnt{n}")
            (area / f"disk{n}").unlink()
            warm = warm_finish([repo / p.filename for p in conf.packages], area / f"rpmdisk{n}", size,
                               area / f"rmnt{n}")
            steps.append((seconds, grow, finish, fresh, warm))
    finally:
        shutil.rmtree(area, ignore_errors=True)
    seconds, grow, finish, fresh, warm = (min(column) for column in zip(*steps))
    return ImageSample(sum(p.installed_size for p in conf.packages), header.stored_bytes,
                       sum(p.file_count for p in conf.packages), seconds, grow, finish, fresh, warm)


def warm_finish(paths: list[Path], backing: Path, size: int, mountpoint: Path) -> float:
    """Seconds of the finish right after an rpm install, whose files are still cached."""
    from ais.client import disk
    from ais.client.packages import STAGING

    with loop_device(backing, size) as device:
        disk.make_fresh_fs(device, "calibrate")
        mountpoint.mkdir()
        disk.mount(device, str(mountpoint))
        try:
            rpm_install(mountpoint, stage_rpms(paths, mountpoint / STAGING))
            shutil.rmtree(mountpoint / STAGING)
        except BaseException:
            disk.unmount(str(mountpoint))
            raise
        seconds = timed(finish_mounted, device, mountpoint)
    backing.unlink()
    return seconds


def timed(action, *args, **kwargs) -> float:
    started = time.monotonic()
    action(*args, **kwargs)
    return time.monotonic() - started


@contextlib.contextmanager
def loop_device(backing: Path, size: int):
    """A loop device over a sparse file of `size` bytes, detached afterwards."""
    with open(backing, "wb") as handle:
        handle.truncate(size)
    device = run(["losetup", "--find", "--show", str(backing)]).stdout.strip()
    try:
        yield device
    finally:
        run(["losetup", "-d", device], check=False)


def finish_like_client(device: str, mountpoint: Path) -> None:
    """Mount an imaged device and finish as the client does."""
    from ais.client import disk

    mountpoint.mkdir()
    disk.mount(device, str(mountpoint))
    finish_mounted(device, mountpoint)


def finish_mounted(device: str, mountpoint: Path) -> None:
    """rpm -Va, install record, unmount, e2fsck -fn: the client's last steps."""
    from ais.client import disk

    try:
        verify(mountpoint)
        record = mountpoint / "var/lib/ais/install.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        with open(record, "w") as handle:
            handle.write("{}")
            os.fsync(handle.fileno())
    finally:
        disk.unmount(str(mountpoint))
    disk.fsck(device)


def measure_host_files(site: Site, work: Path) -> float:
    """Seconds to write one host's files with the client's own durable write."""
    files = [f for h in site.hosts for f in h.files]
    if not files:
        return 0.0
    area = Path(tempfile.mkdtemp(prefix="files-", dir=work))
    started = time.monotonic()
    for n, host_file in enumerate(files):
        write_atomic(area / str(n), host_file.content, host_file.mode)
    per_file = (time.monotonic() - started) / len(files)
    shutil.rmtree(area, ignore_errors=True)
    return per_file * len(files) / max(len(site.hosts), 1)


def calibrate(site: Site, repo: Path, *, max_sets: int = 24, work: Path | None = None,
              disk_bytes: int = DISK_BYTES, echo=print) -> tuple[CostModel, list[RpmSample], list[ImageSample]]:
    """Measure everything the cost model needs on this machine and fit it."""
    if not site.configurations:
        raise BadInput("no configurations to measure; add SCDs")
    work_dir = Path(tempfile.mkdtemp(prefix="ais-calibrate-", dir=work))
    try:
        rpm_samples = []
        for packages in package_sets(site, max_sets):
            sample = measure_rpm(packages, repo, work_dir, disk_bytes=disk_bytes)
            echo(f"rpm: {sample.packages:3d} packages, {sample.installed_bytes / 2**20:6.1f} MiB, "
                 f"{sample.files:5d} files in {sample.seconds:.2f}s")
            rpm_samples.append(sample)
        model = fit_rpm(rpm_samples, CostModel())
        by_size = sorted(site.configurations, key=lambda c: sum(p.installed_size for p in c.packages))
        image_samples = []
        for conf in (by_size[0], by_size[-1]):
            sample = measure_image(conf, repo, work_dir, disk_bytes)
            echo(f"image: {conf.name}: {sample.stored_bytes / 2**20:.1f} MiB stored, written in "
                 f"{sample.seconds:.2f}s, grown in {sample.grow_seconds:.2f}s, finished "
                 f"({sample.files} files) in {sample.finish_seconds:.2f}s; fresh mkfs {sample.fresh_fs_seconds:.2f}s")
            image_samples.append(sample)
        model = fit_image(image_samples, model)
        model = replace(model, host_files_s=measure_host_files(site, work_dir))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return model, rpm_samples, image_samples
