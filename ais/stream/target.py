"""Is this target safe to overwrite? The one check `ais image write|get` and the client share.

What it does: `open_target(path, fs_bytes, create_file=...)` opens the target
for writing and returns the file descriptor; `check_target(path, fs_bytes)`
does the same checks, closes it again and returns the target's size (the
client's check step). A block device is opened with O_EXCL: the kernel refuses
that (EBUSY) while the device is mounted in ANY mount namespace, is active
swap, is part of a device-mapper/md device, or is held by another exclusive
opener; the caller keeps the descriptor for the whole write, so nothing can
mount the device meanwhile. Refused, as bad input (`TargetRefused`, exit 2,
nothing written or created):
- a path that does not exist, unless `create_file` asks for a new regular file
  (never under /dev: a mistyped device name is not a file to create), or whose
  directory does not exist;
- anything but a block device or a regular file;
- a busy block device (the message names the holder when it can be found:
  mounts of every mount namespace, /proc/swaps, /sys/class/block/X/holders,
  and the same for its partitions);
- a loop device whose range of its backing file overlaps another loop device's
  range of the same file (same device and inode, seen with LOOP_GET_STATUS64,
  so in any namespace) while that other loop device is busy: O_EXCL alone does
  not see this aliasing;
- a regular file that backs a loop device, or is active swap (ETXTBSY);
- a block device that holds fewer bytes than the filesystem.
A regular file smaller than the filesystem is extended (ftruncate).

Failures of the world (`TargetIOError`, a `StreamError`: exit 1) name the path
and the errno: opening fails with EIO, extending fails with EFBIG (a file size
limit) or ENOSPC. `target_io(fd_or_path, doing)` turns an OSError of a later
write or sync into the same kind of message (writer.py uses it).

Reads: the target, /proc/self/mountinfo and /proc/<pid>/mountinfo (one process
per mount namespace), /proc/swaps, /sys/class/block, /sys/block/loop*.
Returns a file descriptor (open_target) or a size in bytes (check_target).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import struct
from contextlib import contextmanager
from pathlib import Path

from ais.errors import BadInput, StreamError, describe_errno

SYS_BLOCK = Path("/sys/block")
LOOP_MAJOR = 7
LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64); lo_number,
# lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32); file name, crypt name (64 bytes each),
# key (32 bytes); lo_init[2] (u64).
LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
class TargetRefused(BadInput):
    """The named target must not (or cannot) be written; nothing was. Exit 2."""


class TargetIOError(StreamError):
    """Reading, writing or syncing the target failed (the disk, the filesystem, a limit). Exit 1."""


# ------------------------------------------------------------------ world errors


def io_failure(err: OSError, path: str | os.PathLike, doing: str) -> TargetIOError:
    """'/dev/sdb: syncing failed: Input/output error (EIO: ...)'."""
    return TargetIOError(f"{os.fspath(path)}: {doing} failed: {describe_errno(err)}")


def path_of(fd_or_path: int | str | os.PathLike) -> str:
    if not isinstance(fd_or_path, int):
        return os.fspath(fd_or_path)
    try:
        return os.readlink(f"/proc/self/fd/{fd_or_path}")
    except OSError:
        return f"file descriptor {fd_or_path}"


@contextmanager
def target_io(fd_or_path: int | str | os.PathLike, doing: str):
    """Turn an OSError inside the block into a TargetIOError naming the path and errno."""
    try:
        yield
    except OSError as err:
        raise io_failure(err, path_of(fd_or_path), doing) from err


# ------------------------------------------------------------------ entry points


def check_target(path: str | os.PathLike, fs_bytes: int) -> int:
    """Every check of open_target on an existing target (a file too is refused when smaller than
    fs_bytes), then close it; returns its size in bytes."""
    fd = open_target(path, fs_bytes, create_file=False, extend=False, missing_hint="")
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    if size < fs_bytes:  # a regular file (a block device was measured already): the client does not extend it
        raise TargetRefused(f"target {path} holds {size} bytes but the filesystem needs {fs_bytes}: "
                            f"use a larger disk")
    return size


def open_target(path: str | os.PathLike, fs_bytes: int, *, create_file: bool = False, extend: bool = True,
                missing_hint: str = ": give --create-file to make a new image file") -> int:
    """Open path for writing after every check (see the module docstring); returns the descriptor.

    extend: grow a regular file smaller than fs_bytes (check_target only measures).
    missing_hint: what to say after "target X does not exist" (the client cannot create files).
    """
    target = Path(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return _create_file(target, fs_bytes, create_file, missing_hint)
    except OSError as err:
        raise _open_refusal(target, err) from err
    if stat.S_ISBLK(st.st_mode):
        return _open_block(target, st, fs_bytes)
    if stat.S_ISREG(st.st_mode):
        return _open_file(target, st, fs_bytes, extend)
    raise TargetRefused(f"target {target} is neither a block device nor a regular file")


def _create_file(target: Path, fs_bytes: int, create_file: bool, missing_hint: str) -> int:
    absolute = Path(os.path.abspath(target))
    if absolute.parts[:2] == ("/", "dev"):
        raise TargetRefused(f"target {target} does not exist: name an existing disk (lsblk lists them); "
                            f"nothing was created")
    if not create_file:
        raise TargetRefused(f"target {target} does not exist{missing_hint}; nothing was created")
    if not absolute.parent.is_dir():
        raise TargetRefused(f"cannot create target {target}: directory {absolute.parent} does not exist")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise io_failure(err, target, "creating") from err
    try:
        with target_io(target, f"growing the file to {fs_bytes} bytes"):
            os.ftruncate(fd, fs_bytes)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)  # ours, and empty: leave nothing behind
        raise
    return fd


def _open_file(target: Path, st: os.stat_result, fs_bytes: int, extend: bool) -> int:
    loop = loop_backed_by(st.st_dev, st.st_ino)
    if loop:
        raise TargetRefused(f"target {target} is the backing file of loop device {loop}: "
                            f"write to that device or detach it (losetup -d {loop})")
    if swap_entry(st):
        raise TargetRefused(f"target {target} is active swap (/proc/swaps): swapoff it first")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        raise _open_refusal(target, err) from err
    try:
        if extend and st.st_size < fs_bytes:
            with target_io(target, f"growing the file to {fs_bytes} bytes"):
                os.ftruncate(fd, fs_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_block(target: Path, st: os.stat_result, fs_bytes: int) -> int:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.EBUSY:
            raise TargetRefused(f"target {target} is in use ({busy_reason(st.st_rdev)}): refusing to overwrite "
                                f"it; nothing was written") from err
        raise _open_refusal(target, err) from err
    try:
        _refuse_busy_alias(target, fd, st.st_rdev)
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < fs_bytes:
            raise TargetRefused(f"target {target} holds {size} bytes but the filesystem needs {fs_bytes}: "
                                f"use a larger disk")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_refusal(target: Path, err: OSError) -> Exception:
    """EIO and the like are the world's; a busy swap file or a read-only target is the admin's choice."""
    if err.errno == errno.ETXTBSY:
        return TargetRefused(f"target {target} is in use (active swap or a running program): refusing")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return TargetRefused(f"target {target} cannot be written: {describe_errno(err)}")
    return io_failure(err, target, "opening")


# ------------------------------------------------------------------ who holds a device


def busy_reason(rdev: int) -> str:
    """What holds a block device, as far as can be seen; always a readable phrase."""
    found = holders_of(rdev)
    for part in partitions_of(rdev):
        found += [f"its partition {block_name(part)}: {h}" for h in holders_of(part)]
    return "; ".join(found) if found else "held open exclusively by another program"


def holders_of(rdev: int) -> list[str]:
    found = [f"mounted on {where}" for where in mounts_of(rdev)]
    found += [f"active swap {name}" for name in swaps_of(rdev)]
    base = sysfs_dir(rdev)
    if base is not None and (base / "holders").is_dir():
        found += [f"part of /dev/{h.name}" for h in sorted((base / "holders").iterdir())]
    return found


def block_name(rdev: int) -> str:
    base = sysfs_dir(rdev)
    return f"/dev/{base.name}" if base else f"{os.major(rdev)}:{os.minor(rdev)}"


def sysfs_dir(rdev: int) -> Path | None:
    path = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    return path.resolve() if path.exists() else None


def partitions_of(rdev: int) -> list[int]:
    """Device numbers of the partitions of a whole disk (none for a partition)."""
    base = sysfs_dir(rdev)
    if base is None:
        return []
    return [_devno((child / "dev").read_text()) for child in base.iterdir()
            if (child / "partition").exists() and (child / "dev").exists()]


def _devno(text: str) -> int:
    major, minor = text.strip().split(":")
    return os.makedev(int(major), int(minor))


def mounts_of(rdev: int) -> list[str]:
    """Mount points of the device in this mount namespace, then in every other one."""
    own = _mount_ns("self")
    found = [where for where in _mount_points("/proc/self/mountinfo", rdev)]
    seen = {own}
    for proc in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if not proc.name.isdigit():
            continue
        ns = _mount_ns(proc.name)
        if ns is None or ns in seen:
            continue
        seen.add(ns)
        comm = _read(proc / "comm").strip()
        found += [f"{where} in another mount namespace (process {proc.name} {comm})"
                  for where in _mount_points(proc / "mountinfo", rdev)]
    return found


def _mount_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _read(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _mount_points(mountinfo: str | os.PathLike, rdev: int) -> list[str]:
    """Field 3 of mountinfo is MAJOR:MINOR, field 5 the mount point (octal-escaped)."""
    wanted = f"{os.major(rdev)}:{os.minor(rdev)}"
    return [_unescape(fields[4]) for fields in (line.split() for line in _read(mountinfo).splitlines())
            if len(fields) > 4 and fields[2] == wanted]


def _unescape(field: str) -> str:
    """mountinfo and /proc/swaps write space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def swaps_of(rdev: int) -> list[str]:
    return [name for name, st in _swaps() if st is not None and stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev]


def swap_entry(target: os.stat_result) -> str | None:
    for name, st in _swaps():
        if st is not None and stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return name
    return None


def _swaps() -> list[tuple[str, os.stat_result | None]]:
    out = []
    for line in _read("/proc/swaps").splitlines()[1:]:
        name = _unescape(line.split()[0]) if line.split() else ""
        try:
            out.append((name, os.stat(name)))
        except OSError:
            out.append((name, None))
    return out


# ------------------------------------------------------------------ loop devices


def loop_status(fd: int) -> tuple[int, int, int, int] | None:
    """(backing st_dev, backing st_ino, offset, end or None) of a bound loop device."""
    try:
        raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(LOOP_INFO64.size))
    except OSError:
        return None
    device, inode, _rdevice, offset, sizelimit = LOOP_INFO64.unpack(raw)[:5]
    return device, inode, offset, offset + sizelimit if sizelimit else None


def bound_loops() -> list[tuple[str, tuple[int, int, int, int | None]]]:
    """(/dev/loopN, loop_status) of every bound loop device."""
    out = []
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        if not (entry / "loop").is_dir():
            continue
        device = f"/dev/{entry.name}"
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            status = loop_status(fd)
        finally:
            os.close(fd)
        if status is not None:
            out.append((device, status))
    return out


def loop_backed_by(dev: int, ino: int) -> str | None:
    """The first loop device whose backing file is (dev, ino), if any."""
    return next((device for device, status in bound_loops() if status[:2] == (dev, ino)), None)


def _overlap(a: tuple, b: tuple) -> bool:
    (_, _, start_a, end_a), (_, _, start_b, end_b) = a, b
    return (end_b is None or start_a < end_b) and (end_a is None or start_b < end_a)


def _refuse_busy_alias(target: Path, fd: int, rdev: int) -> None:
    """A loop target aliasing the bytes of another, busy loop device is in use through that one."""
    if os.major(rdev) != LOOP_MAJOR:
        return
    mine = loop_status(fd)
    if mine is None:
        return
    for device, status in bound_loops():
        if os.stat(device).st_rdev == rdev or status[:2] != mine[:2] or not _overlap(mine, status):
            continue
        if _busy(device):
            raise TargetRefused(
                f"target {target} shares its backing file with {device}, which is in use "
                f"({busy_reason(os.stat(device).st_rdev)}): refusing to overwrite it; nothing was written")


def _busy(device: str) -> bool:
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC))
    except OSError as err:
        return err.errno == errno.EBUSY
    return False
