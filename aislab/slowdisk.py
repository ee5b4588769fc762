"""A slow disk for tests and benchmarks: one file on a FUSE filesystem that throttles writes.

What it does: `ThrottledFile` is a FUSE filesystem (mfusepy over libfuse 3) with a single file,
`disk.img`, kept in a sparse backing file on a real filesystem. Every write is held until a
token bucket of `rate` bytes/s says the "disk" has taken it, so writes, one at a time, complete at
that rate at most; reads, flushes and discards are not throttled. `serve(...)` mounts it and runs
until unmounted. `aislab.disks.SlowDisk` runs `serve` in a process of its own and attaches a
loop device to `disk.img`: a block device whose writeback runs at the chosen rate, for a client
whose disk is slower than its network.

Why FUSE: this kernel has neither device-mapper (no dm-delay) nor nbd, and cgroup v1 blkio
throttling applies to direct I/O only (the client writes through the page cache); /dev/fuse is
there, and a loop device over a FUSE file throttles all the loop device's writes, whoever issues
them (page-cache writeback, fsync, the client's tools).

Reads: the backing file. Fails with what libfuse or the mount reports (RuntimeError from
mfusepy) when it cannot mount. Returns nothing: `serve` blocks until the filesystem is unmounted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
import time

import mfusepy

NAME = "disk.img"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class TokenBucket:
    """Hands out time for `rate` bytes/s: take(n) returns when n more bytes fit in that rate."""

    def __init__(self, rate: float):
        self.rate = rate
        self._free_at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + n / self.rate
            wait = self._free_at - now
        if wait > 0:
            time.sleep(wait)


class ThrottledFile(mfusepy.Operations):
    """A filesystem holding one file, `disk.img`, whose writes run at `rate` bytes/s."""

    use_ns = True

    def __init__(self, backing: str, rate: float):
        self.fd = os.open(backing, os.O_RDWR)
        self.bucket = TokenBucket(rate)

    def _is_disk(self, path: str) -> bool:
        if path != "/" + NAME:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return True

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        self._is_disk(path)
        st = os.fstat(self.fd)
        return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": st.st_size,
                "st_blocks": st.st_blocks, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}

    def readdir(self, path, fh):
        return [".", "..", NAME]

    def open(self, path, flags):
        self._is_disk(path)
        return 0

    def read(self, path, size, offset, fh):
        return os.pread(self.fd, size, offset)

    def write(self, path, data, offset, fh):
        self.bucket.take(len(data))
        return os.pwrite(self.fd, data, offset)

    def truncate(self, path, length, fh=None):
        self._is_disk(path)
        os.ftruncate(self.fd, length)

    def fallocate(self, path, mode, offset, size, fh):
        if _libc.fallocate(self.fd, mode, offset, size) != 0:
            raise mfusepy.FuseOSError(ctypes.get_errno())
        return 0

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        return 0  # the backing file is lab scaffolding: its own durability is not the emulated disk's

    def release(self, path, fh):
        return 0

    def statfs(self, path):
        st = os.fstatvfs(self.fd)
        return {"f_bsize": st.f_bsize, "f_frsize": st.f_frsize, "f_blocks": st.f_blocks, "f_bfree": st.f_bfree,
                "f_bavail": st.f_bavail, "f_namemax": 255}


def serve(mountpoint: str, backing: str, rate: float) -> None:
    """Mount `ThrottledFile` on mountpoint (single-threaded: one write at a time, like one disk queue)
    and serve it until it is unmounted."""
    mfusepy.FUSE(ThrottledFile(backing, rate), mountpoint, foreground=True, nothreads=True,
                 allow_other=True, fsname="ais-slowdisk")
