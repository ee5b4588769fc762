"""The client's check step: is this target safe to overwrite? (the shared check of ais.stream.target).

What it does: `check_target(path, fs_bytes)` refuses a target that is not
named (AIS never guesses a disk), then applies `ais.stream.target.check_target`
with no file creation: the target must exist, be a block device or a regular
file, not be in use anywhere (an exclusive open: mounted in any mount
namespace, swap, held; a loop device aliasing a busy one; a loop backing file)
and hold at least fs_bytes. The image step opens it again the same way and
keeps it exclusively open while it writes.

Reads: the target, /proc and /sys (through ais.stream.target). Fails with
`TargetRefused` (bad input, exit 2: nothing was written) or `TargetIOError`
(the disk failed, exit 1). Returns the target's size in bytes.
"""

from __future__ import annotations

import os

from ais.stream import target as targets
from ais.stream.target import TargetRefused


def check_target(path: str | os.PathLike | None, fs_bytes: int) -> int:
    if not path:
        raise TargetRefused("no target disk given: name it (ais.target=/dev/... or --target); AIS never guesses one")
    return targets.check_target(path, fs_bytes)
