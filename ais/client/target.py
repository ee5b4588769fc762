"""Is this target safe to overwrite? Checks done before anything is written.

What it does: `check_target(path, fs_bytes)` refuses a target that
- is not given or does not exist (the disk is always named; AIS never guesses one),
- is neither a block device nor a regular file,
- is mounted, or has a mounted partition (/proc/self/mounts, by device number),
- is a regular file backing a loop device (losetup), or a loop device whose
  backing file is itself mounted elsewhere through another loop device,
- holds fewer bytes than the filesystem to write.
`target_bytes(path)` gives its size.

Reads: /proc/self/mounts, /sys/block/*/ (partitions, loop backing files).
Fails with `ClientError` naming the reason and what to do. Returns the target's
size in bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ais.errors import ClientError

MOUNTS = "/proc/self/mounts"
SYS_BLOCK = Path("/sys/class/block")


def target_bytes(path: str | os.PathLike) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounted_devices(mounts: str = MOUNTS) -> dict[int, str]:
    """st_rdev of each mounted block device -> its mount point."""
    out = {}
    for line in Path(mounts).read_text().splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[0].startswith("/"):
            continue
        try:
            st = os.stat(_unescape(fields[0]))
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            out[st.st_rdev] = _unescape(fields[1])
    return out


def _sysfs_dir(rdev: int) -> Path | None:
    path = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    return path.resolve() if path.exists() else None


def partitions_of(rdev: int) -> list[int]:
    """Device numbers of the partitions of a whole disk (none for a partition or file)."""
    base = _sysfs_dir(rdev)
    if base is None:
        return []
    out = []
    for child in base.iterdir():
        dev = child / "dev"
        if (child / "partition").exists() and dev.exists():
            major, minor = dev.read_text().strip().split(":")
            out.append(os.makedev(int(major), int(minor)))
    return out


def loop_backing_files() -> dict[str, int]:
    """Backing file path -> st_rdev of the loop device using it."""
    out = {}
    for loop in Path("/sys/block").glob("loop*"):
        backing = loop / "loop" / "backing_file"
        if backing.exists():
            major, minor = (loop / "dev").read_text().strip().split(":")
            out[backing.read_text().strip()] = os.makedev(int(major), int(minor))
    return out


def check_target(path: str | os.PathLike | None, fs_bytes: int, *, mounts: str = MOUNTS) -> int:
    """Refuse an unsafe target (see the module docstring); returns its size in bytes."""
    if not path:
        raise ClientError("no target disk given: name it (ais.target=/dev/... or --target); AIS never guesses one")
    target = Path(path)
    try:
        st = os.stat(target)
    except OSError as err:
        raise ClientError(f"target {target} cannot be used: {err.strerror}") from err
    mounted = mounted_devices(mounts)
    if stat.S_ISBLK(st.st_mode):
        if st.st_rdev in mounted:
            raise ClientError(f"target {target} is mounted on {mounted[st.st_rdev]}: refusing to overwrite it")
        for part in partitions_of(st.st_rdev):
            if part in mounted:
                raise ClientError(f"a partition of target {target} is mounted on {mounted[part]}: refusing")
        _check_loop_backing(target, st, mounted)
    elif stat.S_ISREG(st.st_mode):
        real = str(target.resolve())
        loops = loop_backing_files()
        if real in loops:
            raise ClientError(f"target {target} is the backing file of a loop device "
                              f"({os.major(loops[real])}:{os.minor(loops[real])}): write to that device or detach it")
    else:
        raise ClientError(f"target {target} is neither a block device nor a regular file")
    size = target_bytes(target)
    if size < fs_bytes:
        raise ClientError(f"target {target} holds {size} bytes but the filesystem needs {fs_bytes}: use a larger disk")
    return size


def _check_loop_backing(target: Path, st: os.stat_result, mounted: dict[int, str]) -> None:
    """A loop device whose backing file another mounted loop device also uses is in use."""
    base = _sysfs_dir(st.st_rdev)
    backing = base / "loop" / "backing_file" if base else None
    if backing is None or not backing.exists():
        return
    file = backing.read_text().strip()
    for loop in Path("/sys/block").glob("loop*"):
        other = loop / "loop" / "backing_file"
        if other.exists() and other.read_text().strip() == file:
            major, minor = (loop / "dev").read_text().strip().split(":")
            rdev = os.makedev(int(major), int(minor))
            if rdev != st.st_rdev and rdev in mounted:
                raise ClientError(f"target {target} shares its backing file {file} with /dev/{loop.name}, "
                                  f"which is mounted on {mounted[rdev]}: refusing")
