"""One rebuild at a time: an flock on cache/lock that names its holder.

The holder writes its pid into the lock file after taking the lock, so a
second run can say who holds it. The kernel drops the flock when the holder
dies (even by kill -9), so a crash never leaves the cache locked.

Reads: the cache's lock file. Fails with `LockBusy` (naming the holder's pid)
when `wait` is False and another process holds the lock. Returns a context
manager; the lock is held inside the `with` block.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ais.errors import LockBusy

log = logging.getLogger("ais.cache.lock")


def holder(lock_path: Path) -> str:
    """The pid written by the current (or last) holder, or '?'."""
    try:
        return lock_path.read_text().strip() or "?"
    except OSError:
        return "?"


@contextlib.contextmanager
def locked(lock_path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on lock_path for the duration of the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            who = holder(lock_path)
            if not wait:
                raise LockBusy(f"another rebuild (pid {who}) holds {lock_path}; "
                               "not waiting (--no-wait)") from None
            log.info("waiting for the rebuild lock held by pid %s", who)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
