"""Loop devices for tests and benchmarks: a sparse file attached with losetup, detached after.

What it does: `LoopDisk(path, size_mib)` creates a sparse file, attaches it
(`losetup --find --show`), and `close()` unmounts anything still mounted from
it and detaches it (also as a context manager). `fill_random(mib)` writes
garbage over the start of the disk (a disk that held something else).
`read_target_file(dev, path)` mounts the device read-only somewhere temporary
and returns a file's bytes, stat and the rpm -qa of the root.

Host tools: losetup, mount, umount (through `ais.run.run`). Fails with
`ToolError`. Returns the device path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ais.run import run


class LoopDisk:
    def __init__(self, path: str | os.PathLike, size_mib: int):
        self.file = Path(path)
        with open(self.file, "wb") as f:
            f.truncate(size_mib << 20)
        self.device = run(["losetup", "--find", "--show", str(self.file)]).stdout.strip()

    def fill_random(self, mib: int) -> None:
        with open(self.device, "r+b") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for line in reversed(mounts):
            fields = line.split()
            if fields and fields[0] == self.device:
                run(["umount", "-l", fields[1]], check=False)
        run(["losetup", "-d", self.device], check=False)

    def __enter__(self) -> "LoopDisk":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Mounted:
    """Mount a device read-only in a temporary directory for inspection."""

    def __init__(self, device: str, *, readonly: bool = True):
        self.device, self.readonly = device, readonly
        self.root = Path(tempfile.mkdtemp(prefix="ais-inspect-"))

    def __enter__(self) -> Path:
        run(["mount", "-t", "ext4", "-o", "ro,noload" if self.readonly else "rw", self.device, str(self.root)])
        return self.root

    def __exit__(self, *exc) -> None:
        run(["umount", str(self.root)], check=False)
        self.root.rmdir()


def reinstall_argv(url: str, host: str, token: str | None, target: str, state, *extra: str) -> list[str]:
    """argv of `ais client reinstall` run as its own process (as at boot)."""
    from ais.stream.lab import ais_command

    argv = [*ais_command("client", "reinstall"), "--server", url, "--host", host,
            "--target", target, "--state", str(state), *extra]
    return argv + (["--token", token] if token else [])


def target_facts(device: str, paths: list[str]) -> dict:
    """What is on an installed target: rpm -qa, rpm -Va, the given files (bytes, mode, uid, gid),
    the install record, and whether e2fsck -fn passes (checked after unmounting)."""
    import json
    import stat

    from ais.rpmenv import installed_nevras, verify

    with Mounted(device) as root:
        files = {}
        for path in paths:
            full = root / path.lstrip("/")
            st = os.lstat(full)
            files[path] = (full.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        record_path = root / "var/lib/ais/install.json"
        facts = {"nevras": installed_nevras(root), "rpm_va": verify(root), "files": files,
                 "record": json.loads(record_path.read_text()) if record_path.exists() else None,
                 "staging_left": (root / ".ais-staging").exists()}
    facts["fsck_rc"] = run(["e2fsck", "-fn", device], check=False).returncode
    return facts
