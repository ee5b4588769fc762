"""The target check outside the lab: real loop devices, mount namespaces, swap, full and failing disks.

Every case runs the real `ais` (image write, image get against a real serve-stream, client
reinstall against a real `ais serve`). A target in use anywhere (mounted in another mount
namespace, aliased by another loop device that is mounted, active swap), a mistyped /dev
path, a missing file without --create-file: exit 2, a one-line message, nothing written and
nothing created. A full filesystem (ENOSPC), a file size limit (EFBIG), a failing disk (EIO:
a loop device over a file on an ext4 that was shut down with EXT4_IOC_SHUTDOWN, which then
answers every I/O with EIO) and a host file whose path is a directory in the image: exit 1
with the path and the errno's meaning, never "internal error".
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import subprocess
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, reinstall_argv
from ais.cost import CostModel, save_calibration
from ais.run import run, start
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors, wait_for
from aislab.net import ais_command, make_fs_image, make_tree
from ais.stream.pack import pack

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fb9577bf9257dd86cd19d77acdaf07b7"  # db01's
EXT4_IOC_SHUTDOWN = 0x8004587D
EXT4_GOING_FLAGS_NOLOGFLUSH = 2
FAST = ["--retries", "2", "--retry-delay", "0.1"]


# ------------------------------------------------------------------ lab helpers (this file only)


@contextmanager
def mounted_elsewhere(device: str, where: Path):
    """Mount device on where inside a new mount namespace that a background process keeps alive.
    Read-only: a read-write mount of a fresh ext4 keeps writing after it is up (ext4lazyinit zeroes
    inode tables, the journal commits the superblock), which changed the disk's bytes under the
    tests that check nothing was written. A read-only mount holds the device just the same."""
    where.mkdir(parents=True, exist_ok=True)
    proc = start(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  'mount -t ext4 -o ro "$0" "$1" && echo ready && exec sleep 3600', device, str(where)])
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        assert device not in Path("/proc/self/mounts").read_text()  # invisible from here
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=30)


@contextmanager
def swap_on(device: str):
    run(["mkswap", "-q", device])
    run(["swapon", device])
    try:
        yield
    finally:
        run(["swapoff", device])


@contextmanager
def attached(file: Path):
    device = run(["losetup", "--find", "--show", str(file)]).stdout.strip()
    try:
        yield device
    finally:
        run(["losetup", "-d", device], check=False)


@contextmanager
def small_fs(tmp_path: Path, name: str, mib: int):
    """A freshly made ext4 on a loop device, mounted in this namespace; yields (LoopDisk, mount point)."""
    where = tmp_path / f"{name}-mnt"
    where.mkdir()
    with LoopDisk(tmp_path / f"{name}.img", mib) as disk:
        run(["mkfs.ext4", "-q", "-F", disk.device])
        run(["mount", "-t", "ext4", disk.device, str(where)])
        try:
            yield disk, where
        finally:
            run(["umount", str(where)], check=False)


def shut_down(mount_point: Path) -> None:
    """EXT4_IOC_SHUTDOWN: from now on every read and write of this filesystem fails with EIO."""
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
    finally:
        os.close(fd)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ais(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run([*prefix, *ais_command(*args)], check=False, timeout=240)


def assert_one_clean_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ais: error:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], proc.stderr


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("targets")
    fs = make_fs_image(make_tree(work / "tree", random_kib=1024, text_files=20), work / "fs.img", 32)
    (work / "images").mkdir()
    out = work / "images" / "img.aisimg"
    pack(fs, out, image_id="img", packages=[])
    return out


@pytest.fixture(scope="module")
def stream_server(image):
    proc = start([*ais_command("image", "serve-stream"), str(image.parent), "--listen", "127.0.0.1:0"])
    try:
        port = json.loads(proc.stdout.readline())["listening"][1]
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("site")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], ["mail01", "db01"])
    hcd = descriptors / "hcd" / "mail01.xml"  # a host file where the installed image has a directory
    hcd.write_text(hcd.read_text().replace("</hcd>", '  <file path="/var/lib/rpm">x\n</file>\n</hcd>'))
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "history.sqlite") as server:
        yield server


def write_cmd(image, target, *extra, **_):
    return ais("image", "write", str(image), str(target), *extra)


def get_cmd(image, target, *extra, stream_server, **_):
    return ais("image", "get", "--server", stream_server, "--image", "img", str(target), *extra)


def reinstall_cmd(image, target, *extra, site, state, **_):
    return run(reinstall_argv(site.url, "db01", TOKEN, str(target), state, *FAST, *extra), check=False, timeout=240)


COMMANDS = {"image write": write_cmd, "image get": get_cmd, "client reinstall": reinstall_cmd}


# ------------------------------------------------------------------ refusals: exit 2, nothing written


def fingerprint(path: Path):
    """What must not change: the bytes of a disk's backing file (or file), a path's (non-)existence."""
    return lambda: digest(path) if path.is_file() else path.exists()


def busy_mounted_elsewhere(tmp_path, stack):
    disk = stack.enter_context(LoopDisk(tmp_path / "disk.img", 512))
    run(["mkfs.ext4", "-q", "-F", disk.device])
    stack.enter_context(mounted_elsewhere(disk.device, tmp_path / "elsewhere"))
    return disk.device, fingerprint(disk.file)


def alias_of_a_loop_mounted_elsewhere(tmp_path, stack):
    disk = stack.enter_context(LoopDisk(tmp_path / "disk.img", 512))
    run(["mkfs.ext4", "-q", "-F", disk.device])
    stack.enter_context(mounted_elsewhere(disk.device, tmp_path / "elsewhere"))
    return stack.enter_context(attached(disk.file)), fingerprint(disk.file)


def active_swap(tmp_path, stack):
    disk = stack.enter_context(LoopDisk(tmp_path / "disk.img", 512))
    stack.enter_context(swap_on(disk.device))
    return disk.device, first_page(disk.file)


def first_page(path: Path):
    """The swap header page: the kernel may swap pages out onto an active swap area at any
    time, but never over its header, while an image write would (the ext4 superblock
    is at byte 1024). So only the first 4 KiB must stay as they were."""
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read(4096)
    return read


def loop_backing_file(tmp_path, stack):
    disk = stack.enter_context(LoopDisk(tmp_path / "disk.img", 512))
    return disk.file, fingerprint(disk.file)


def too_small_disk(tmp_path, stack):
    disk = stack.enter_context(LoopDisk(tmp_path / "disk.img", 8))
    return disk.device, fingerprint(disk.file)


def mistyped_dev_path(tmp_path, stack):
    return missing(stack, Path("/dev/ais-no-such-disk"))


def missing_file(tmp_path, stack):
    return missing(stack, tmp_path / "new-disk.img")


def missing(stack, path: Path):
    """A path that does not exist; removed again should a broken check create it (as the old code did)."""
    assert not path.exists()
    stack.callback(lambda: [p.unlink(missing_ok=True) for p in (path, Path(f"{path}.ais-progress"))])
    return path, fingerprint(path)


def character_device(tmp_path, stack):
    return Path("/dev/null"), lambda: os.stat("/dev/null").st_rdev


# (case, target maker, words of the message, extra arguments, commands)
REFUSALS = [
    ("mounted in another mount namespace", busy_mounted_elsewhere, ["in use", "in another mount namespace"], [],
     COMMANDS),
    ("loop alias of a disk mounted elsewhere", alias_of_a_loop_mounted_elsewhere,
     ["shares its backing file", "in another mount namespace"], [], COMMANDS),
    ("active swap", active_swap, ["in use", "active swap"], [], COMMANDS),
    ("backing file of a loop device", loop_backing_file, ["backing file of loop device"], [], COMMANDS),
    ("disk smaller than the filesystem", too_small_disk, ["use a larger disk"], [], COMMANDS),
    ("mistyped /dev path", mistyped_dev_path, ["/dev/ais-no-such-disk does not exist"], [], COMMANDS),
    ("mistyped /dev path with --create-file", mistyped_dev_path, ["/dev/ais-no-such-disk does not exist"],
     ["--create-file"], ("image write", "image get")),
    ("missing file without --create-file", missing_file, ["does not exist", "--create-file"], [],
     ("image write", "image get")),
    ("missing file (the client never creates one)", missing_file, ["does not exist"], [], ("client reinstall",)),
    ("character device", character_device, ["neither a block device nor a regular file"], [], COMMANDS),
]


CASES = [(command, *row[:4]) for row in REFUSALS for command in row[4]]


@pytest.mark.parametrize("command,case,make,words,extra", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_refused_target_is_left_untouched(request, tmp_path, image, command, case, make, words, extra):
    fixtures = {"stream_server": None, "site": None}
    if command == "image get":
        fixtures["stream_server"] = request.getfixturevalue("stream_server")
    if command == "client reinstall":
        fixtures["site"] = request.getfixturevalue("site")
    with ExitStack() as stack:
        target, unchanged = make(tmp_path, stack)
        before = unchanged()
        proc = COMMANDS[command](image, target, *extra, state=tmp_path / "state", **fixtures)
        assert_one_clean_line(proc, 2, str(target), *words)
        assert unchanged() == before  # not one byte written, nothing created
        assert not Path(f"{target}.ais-progress").exists()


def test_existing_regular_file_is_accepted_without_the_flag(tmp_path, image):
    target = tmp_path / "disk.img"
    target.write_bytes(b"")
    proc = write_cmd(image, target, "--json")
    assert proc.returncode == 0, proc.stderr
    run(["e2fsck", "-fn", str(target)])


def test_create_file_makes_a_new_image_file(tmp_path, image, stream_server):
    for name, command in (("w.img", write_cmd), ("g.img", get_cmd)):
        proc = command(image, tmp_path / name, "--create-file", stream_server=stream_server)
        assert proc.returncode == 0, proc.stderr
        run(["e2fsck", "-fn", str(tmp_path / name)])


def test_the_device_stays_exclusively_open_for_the_whole_write(site, tmp_path):
    """While the client writes the image (paused after its first chunk), nothing can mount the disk."""
    marker = tmp_path / "paused"
    env = {"AIS_TEST_PAUSE_AT": "image-first-chunk", "AIS_TEST_PAUSE_FILE": str(marker), "AIS_TEST_PAUSE_SECONDS": "3600"}
    with LoopDisk(tmp_path / "disk.img", 512) as disk:
        run(["mkfs.ext4", "-q", "-F", disk.device])  # a mountable filesystem before the reinstall
        client = start(reinstall_argv(site.url, "db01", TOKEN, disk.device, tmp_path / "st", *FAST), env=env)
        try:
            assert wait_for(marker.exists, timeout=120), client.communicate()
            (tmp_path / "m").mkdir()
            attempt = run(["mount", "-t", "ext4", "-o", "ro", disk.device, str(tmp_path / "m")], check=False)
            assert attempt.returncode != 0 and "busy" in attempt.stderr.lower(), attempt
        finally:
            client.kill()
            client.communicate(timeout=30)


# ------------------------------------------------------------------ failures of the world: exit 1


def full_filesystem(tmp_path, stack):
    """A file target on a 16 MiB ext4 with under 512 KiB left (the image has 1 MiB of data)."""
    _, where = stack.enter_context(small_fs(tmp_path, "full", 16))
    free = os.statvfs(where)  # f_bfree: root may use the reserved blocks too
    run(["fallocate", "-l", str(free.f_bfree * free.f_frsize - (512 << 10)), str(where / "filler")])
    return where / "disk.img", ["--create-file"], (), ["No space left on device", "ENOSPC"]


def file_size_limit_when_growing(tmp_path, stack):
    return tmp_path / "disk.img", ["--create-file"], ("prlimit", "--fsize=1048576"), ["File too large", "EFBIG"]


def file_size_limit_when_writing(tmp_path, stack):
    target = tmp_path / "disk.img"
    with open(target, "wb") as f:
        f.truncate(32 << 20)  # already full size: the limit bites at the first write past 1 MiB
    return target, [], ("prlimit", "--fsize=1048576"), ["File too large", "EFBIG"]


def failing_disk(tmp_path, stack):
    """A loop device whose backing file lives on an ext4 that was shut down: its writes fail with EIO."""
    _, where = stack.enter_context(small_fs(tmp_path, "host", 64))
    backing = where / "failing.disk"
    with open(backing, "wb") as f:
        f.truncate(48 << 20)
    device = stack.enter_context(attached(backing))
    shut_down(where)
    return Path(device), [], (), ["Input/output error", "EIO"]


def file_on_a_failing_disk(tmp_path, stack):
    _, where = stack.enter_context(small_fs(tmp_path, "host", 64))
    (where / "disk.img").write_bytes(b"")
    shut_down(where)
    return where / "disk.img", [], (), ["Input/output error", "EIO"]


WORLD = [
    ("ENOSPC: a full filesystem", full_filesystem),
    ("EFBIG: a file size limit when growing the file", file_size_limit_when_growing),
    ("EFBIG: a file size limit when writing", file_size_limit_when_writing),
    ("EIO: a failing disk under a loop device", failing_disk),
    ("EIO: a file on a failing filesystem", file_on_a_failing_disk),
]


@pytest.mark.parametrize("case,make", WORLD, ids=[w[0] for w in WORLD])
def test_world_errors_name_the_path_and_the_errno(tmp_path, image, case, make):
    with ExitStack() as stack:
        target, extra, prefix, words = make(tmp_path, stack)
        proc = ais("image", "write", str(image), str(target), *extra, prefix=prefix)
        assert_one_clean_line(proc, 1, str(target), *words)


def test_host_file_where_the_image_has_a_directory(site, tmp_path):
    with LoopDisk(tmp_path / "disk.img", 1024) as disk:
        proc = run(reinstall_argv(site.url, "mail01", "9d4bf7abd55eb7e7da9043caf50c4203", disk.device,
                                  tmp_path / "st", *FAST), check=False, timeout=240)
    assert_one_clean_line(proc, 1, "/var/lib/rpm", "is a directory in the installed image")
    assert "REINSTALL FAILED in phase 'files'" in proc.stderr


def hostfile_directory(root):
    (root / "var/lib/rpm").mkdir(parents=True)
    return "/var/lib/rpm", ["/var/lib/rpm is a directory in the installed image"]


def hostfile_parent_is_a_file(root):
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return "/etc/passwd/extra", ["/etc/passwd is not a directory in the installed image"]


def hostfile_on_a_full_disk(root):
    free = os.statvfs(root)
    run(["fallocate", "-l", str(free.f_bfree * free.f_frsize - (512 << 10)), str(root / "filler")])
    return "/etc/big.conf", ["/etc/big.conf", "No space left on device (ENOSPC"]


def hostfile_on_a_failing_disk(root):
    shut_down(root)
    return "/etc/hostname", ["/etc/hostname", "Input/output error (EIO"]


HOST_FILE_FAULTS = [("a directory in the image", hostfile_directory),
                    ("a parent that is a file", hostfile_parent_is_a_file),
                    ("ENOSPC: the target is full", hostfile_on_a_full_disk),
                    ("EIO: the target fails", hostfile_on_a_failing_disk)]


@pytest.mark.parametrize("case,make", HOST_FILE_FAULTS, ids=[h[0] for h in HOST_FILE_FAULTS])
def test_host_file_faults_name_the_path(tmp_path, case, make):
    """The files step on a real (small, full or failing) ext4: a ClientError naming the host file."""
    from ais.client.hostfiles import safe_path, write_one
    from ais.errors import ClientError

    with small_fs(tmp_path, "root", 16) as (_, root):
        path, words = make(root)
        with pytest.raises(ClientError) as caught:
            write_one(str(root), path, safe_path(str(root), path), os.urandom(1 << 20), 0o644, 0, 0)
    for word in words:
        assert word in str(caught.value)
