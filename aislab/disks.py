"""Loop devices for tests and benchmarks: a sparse file attached with losetup, detached after.

What it does: `LoopDisk(path, size_mib)` creates a sparse file, attaches it
(`losetup --find --show`), and `close()` unmounts anything still mounted from
it and detaches it (also as a context manager). `fill_random(mib)` writes
garbage over the start of the disk (a disk that held something else).
`read_target_file(dev, path)` mounts the device read-only somewhere temporary
and returns a file's bytes, stat and the rpm -qa of the root.
`serve_in(lab, i, ...)` starts a real `ais serve` inside host i of a
`NetLab` (control API and TCP streamer on that host's address) and returns
its URL. `SlowDisk(directory, size_mib, write_rate)` is a LoopDisk whose writes run at
`write_rate` bytes/s: the loop device's file lives on the throttling FUSE
filesystem of `aislab.slowdisk` (why FUSE: see there), served by a process
of its own that `close()` unmounts and ends.

Host tools: losetup, mount, umount (through `ais.run.run`); /dev/fuse and
libfuse 3 for SlowDisk. Fails with `ToolError`, or `WorldError` when the slow
disk's filesystem does not come up. Returns the device path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ais.errors import WorldError
from ais.run import run, start
from aislab.lines import next_line


class LoopDisk:
    def __init__(self, path: str | os.PathLike, size_mib: int):
        self.file = Path(path)
        # A new file, not the old one emptied: a mount of an earlier disk at this path that another
        # mount namespace still holds (any `ip netns exec` started meanwhile copies it, and / is
        # private here) keeps the old file's loop device busy, and the new device must not share it.
        self.file.unlink(missing_ok=True)
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


class SlowDisk(LoopDisk):
    """A loop device whose writes run at `write_rate` bytes/s (a FUSE file under it; see aislab.slowdisk)."""

    def __init__(self, directory: str | os.PathLike, size_mib: int, write_rate: float):
        from aislab.slowdisk import NAME

        self.directory = Path(directory)
        self.mountpoint = self.directory / "fuse"
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.backing = self.directory / "backing.img"
        with open(self.backing, "wb") as f:
            f.truncate(size_mib << 20)
        self.write_rate = write_rate
        self.log = self.directory / "slowdisk.log"
        with open(self.log, "w") as log:  # the daemon: a plain interpreter running slowdisk.serve
            self._daemon = start([sys.executable, "-c", f"from aislab.slowdisk import serve; "
                                  f"serve({str(self.mountpoint)!r}, {str(self.backing)!r}, {float(write_rate)!r})"],
                                 stdout=subprocess.DEVNULL, stderr=log, cwd=Path(__file__).resolve().parents[1])
        self.device = None
        try:
            self._wait_mounted()
            self.file = self.mountpoint / NAME
            self.device = run(["losetup", "--find", "--show", str(self.file)]).stdout.strip()
        except BaseException:
            self.close()
            raise

    def _wait_mounted(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self._daemon.poll() is not None or time.monotonic() > deadline:
                raise WorldError(f"the slow disk's FUSE filesystem did not mount on {self.mountpoint} "
                                 f"(exit code {self._daemon.poll()}; needs /dev/fuse and libfuse 3): "
                                 f"{self.log.read_text()[-1000:]}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.device:
            super().close()
            self.device = None
        if os.path.ismount(self.mountpoint):
            run(["umount", str(self.mountpoint)], check=False)  # the daemon's loop ends with its mount
        try:
            self._daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._daemon.kill()
            self._daemon.wait(timeout=10)
            run(["umount", "-l", str(self.mountpoint)], check=False)
        self.backing.unlink(missing_ok=True)


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


def serve_in(lab, i: int, descriptors, repo, cache, history, log, *extra: str, timeout: float = 30.0) -> str:
    """`ais serve` inside host i of a NetLab (stderr to the open file `log`); returns its control URL.
    The lab kills it on close."""
    import json

    from aislab.net import ais_command

    address = lab.address(i)
    argv = [*ais_command("serve"), "--plain-http", "--descriptors", str(descriptors), "--repo", str(repo),
            "--cache", str(cache),
            "--history", str(history), "--listen", f"{address}:0", "--stream-listen", f"{address}:0",
            "--poll", "0.2", *extra]
    proc = lab.spawn(i, argv, stderr=log, env={"PYTHONUNBUFFERED": "1"})
    line = next_line(proc.stdout, timeout)
    if not line.startswith('{"listening"'):
        raise WorldError(f"ais serve did not start in {lab.names[i]}: {line!r} (log {getattr(log, 'name', log)})")
    return json.loads(line)["listening"]["url"]


def reinstall_argv(url: str, host: str, token: str | None, target: str, state, *extra: str) -> list[str]:
    """argv of `ais client reinstall` run as its own process (as at boot)."""
    from aislab.net import ais_command

    argv = [*ais_command("client", "reinstall"), "--server", url, "--host", host,
            "--target", target, "--state", str(state), *extra]
    return argv + (["--token", token] if token else [])


def target_facts(device: str, paths: list[str]) -> dict:
    """What is on an installed target: rpm -qa, rpm -Va, the given files (bytes, mode, uid, gid),
    the install record, the bootloader (extlinux.conf's text or None, whether ldlinux.sys is there,
    the first sector of the device), and whether e2fsck -fn passes (checked after unmounting)."""
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
        conf = root / "boot/extlinux/extlinux.conf"
        facts["extlinux_conf"] = conf.read_text() if conf.exists() else None
        facts["ldlinux"] = (root / "boot/extlinux/ldlinux.sys").exists()
    with open(device, "rb") as f:
        facts["boot_sector"] = f.read(512)
    facts["fsck_rc"] = run(["e2fsck", "-fn", device], check=False).returncode
    return facts
