"""aislab.demo_kernel: Debian's kernel as it is, and an initramfs of /init, busybox and the modules in order.

The real build (apt's lists, the kernel .deb in the shared download store, dpkg-deb);
the archive is read back by a newc reader of its own, the kernel compared with the
.deb's own file (dpkg-deb | tar), the RPM's file digests with the build's files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from pathlib import Path

import pytest

from ais.bootenv import elf, recipe
from ais.errors import UsageError
from ais.run import run
from aislab import demo_kernel as builder

ROOT = Path(__file__).resolve().parents[2]


def newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, body), in archive order, parsed from newc bytes independently of the writer."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = fields[11], fields[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        body_at = pos + 110 + namesize + (-(110 + namesize) % 4)
        pos = body_at + size + (-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (fields[1], data[body_at:body_at + size])


@pytest.fixture(scope="module")
def archive(demo_kernel) -> dict[str, tuple[int, bytes]]:
    return newc(gzip.decompress(demo_kernel.initrd.read_bytes()))


def test_the_build_names_its_release_and_inputs(demo_kernel):
    assert demo_kernel.release.endswith("-amd64")
    assert (demo_kernel.out / "release").read_text() == f"{demo_kernel.release}\n"
    assert demo_kernel.kernel.name == f"vmlinuz-{demo_kernel.release}"
    assert demo_kernel.initrd.name == f"initrd.img-{demo_kernel.release}"
    inputs = json.loads((demo_kernel.out / "inputs.json").read_text())
    assert inputs["kernel_deb"]["name"] == f"linux-image-{demo_kernel.release}"
    assert inputs["busybox_sha256"] == hashlib.sha256(Path("/bin/busybox").read_bytes()).hexdigest()


def test_the_kernel_is_the_one_in_the_deb(demo_kernel, tmp_path):
    deb = json.loads((demo_kernel.out / "inputs.json").read_text())["kernel_deb"]
    path = builder.DEFAULT_DEBS / f"{deb['name']}_{deb['version'].replace(':', '%3a')}_amd64.deb"
    run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "./boot/$3"', "sh", path, tmp_path,
         demo_kernel.kernel.name], timeout=300)
    assert demo_kernel.kernel.read_bytes() == (tmp_path / "boot" / f"vmlinuz-{demo_kernel.release}").read_bytes()


def test_the_initramfs_holds_init_busybox_and_the_modules(archive):
    mode, body = archive["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and body == (ROOT / "aislab" / "demo_kernel_init.sh").read_bytes()
    mode, body = archive["bin/busybox"]
    assert stat.S_ISREG(mode) and mode & 0o111 and body == Path("/bin/busybox").read_bytes()
    assert archive["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert stat.S_ISCHR(archive["dev/console"][0])
    for d in ("proc", "sys", "dev", "newroot"):
        assert stat.S_ISDIR(archive[d][0]), d


def test_the_modules_are_listed_in_loading_order(demo_kernel, archive, tmp_path):
    """/etc/modules names every module of the recipe, each after the modules its .modinfo depends on."""
    listed = archive["etc/modules"][1].decode().split()
    names = [Path(m).name.replace("-", "_") for m in listed]
    assert set(recipe.MODULES) <= set(names)
    assert len(names) == len(set(names))
    for position, rel in enumerate(listed):
        ko = tmp_path / f"{names[position]}.ko"
        ko.write_bytes(archive[f"lib/modules/{demo_kernel.release}/{rel}.ko"][1])
        for dep in filter(None, elf.modinfo(ko).get("depends", [""])[0].split(",")):
            assert dep.replace("-", "_") in names[:position], f"{names[position]} is loaded before {dep}"
    shipped = sorted(n for n in archive if n.endswith(".ko"))
    assert shipped == sorted(f"lib/modules/{demo_kernel.release}/{rel}.ko" for rel in listed)


def test_a_second_build_elsewhere_gives_the_same_bytes_and_a_third_does_nothing(demo_kernel, tmp_path):
    again = builder.build(tmp_path / "again", quiet=True)
    assert again.built_now and again.release == demo_kernel.release
    for name in (demo_kernel.kernel.name, demo_kernel.initrd.name, "release", "inputs.json"):
        assert (tmp_path / "again" / name).read_bytes() == (demo_kernel.out / name).read_bytes(), name
    before = (tmp_path / "again" / demo_kernel.initrd.name).stat().st_mtime_ns
    third = builder.build(tmp_path / "again", quiet=True)
    assert not third.built_now
    assert (tmp_path / "again" / demo_kernel.initrd.name).stat().st_mtime_ns == before


BAD_DIRECTORIES = {
    "--out is a file": ("out", "file"),
    "--out is below a file": ("out", "file/sub"),
    "--debs is a file": ("debs", "file"),
}


@pytest.mark.parametrize("case", list(BAD_DIRECTORIES))
def test_a_directory_that_is_a_file_is_bad_input(tmp_path, case):
    option, rel = BAD_DIRECTORIES[case]
    (tmp_path / "file").write_text("not a directory\n")
    paths = {"out": tmp_path / "out", "debs": tmp_path / "debs", option: tmp_path / rel}
    with pytest.raises(UsageError, match=f"--{option} .* is not a directory"):
        builder.build(paths["out"], paths["debs"], quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made


def test_the_kernel_package_ships_these_files(demo_kernel, repo_dir):
    """The lead's kexec looks for /boot/vmlinuz-R and /boot/initrd.img-R in the installed system."""
    rpm = repo_dir / "RPMS" / "x86_64" / "kernel-6.1.0-1.x86_64.rpm"
    listing = run(["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEDIGESTS}\\n]", str(rpm)]).stdout
    digests = dict(line.split(" ", 1) for line in listing.splitlines())
    for path in (demo_kernel.kernel, demo_kernel.initrd):
        assert digests[f"/boot/{path.name}"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not any(p.startswith(f"/lib/modules/{demo_kernel.release}") for p in digests)  # the filler is apart
    assert sorted(p for p in digests if p.startswith("/boot/")) == sorted(
        [f"/boot/{demo_kernel.kernel.name}", f"/boot/{demo_kernel.initrd.name}", "/boot/System.map-6.1.0-1"])
