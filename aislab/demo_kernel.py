"""The demo site's "distribution kernel": Debian's kernel and a small initramfs that mounts a root disk.

The lab's stand-in, like the other generated demo packages: packages/kernel.spec
ships what this writes, so a disk reinstalled from the demo repository boots
(kexec from the boot environment, or QEMU's -kernel/-initrd).

What it does, in named steps (one line each on stderr):
  resolve   the kernel package apt would install (linux-image-amd64's dependency,
            as `ais bootenv build` resolves it: ais.bootenv.apt), with its SHA256
  key       the inputs: that package, the host's static /bin/busybox (Debian
            busybox-static, as packages/busybox-base.spec copies it), the module
            list (ais.bootenv.recipe.MODULES), this builder and its /init
            (aislab/demo_kernel_init.sh). OUT/inputs.json equal and the outputs
            there: nothing else is done.
  fetch     the .deb into the download store (default: the one `ais bootenv build
            --cache build/test-bootenv` of the tests and bench/boot.py uses, so the
            kernel is downloaded once; a copy in apt's own cache is linked first)
  unpack    `dpkg-deb -x` into a scratch directory beside OUT
  assemble  /init, /bin/busybox, the modules for disks, NICs and ext4 in loading
            order (ais.bootenv.build.module_order) and /etc/modules naming them
  pack      cpio newc (ais.bootenv.cpio: sorted, mtime 0, root-owned), gzip with
            mtime 0: same inputs, same bytes
  publish   OUT is replaced as a whole (rename of a finished sibling directory)

Writes OUT/vmlinuz-<release> (the package's /boot/vmlinuz-<release>, the same
bytes), OUT/initrd.img-<release>, OUT/release (the release, one line) and
OUT/inputs.json. No modules on disk: the installed system needs none after
switch_root (virtio_net and the rest stay loaded from the initramfs).

Reads: apt's lists, the .deb, /bin/busybox. Fails with `UsageError` (exit 2) for
an --out or --debs that is a file, `WorldError`/`ToolError` (exit 1) naming the
step (apt does not know the kernel, a download does not match its SHA256, a
module is missing, no static busybox). Returns a `Built` record.

Run as `python -m aislab.demo_kernel --out build/demo-kernel [--debs DIR]`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from ais.bootenv import apt, recipe
from ais.bootenv.build import module_order
from ais.bootenv.cpio import write_newc
from ais.errors import AisError, BuildError, UsageError, WorldError
from ais.files import file_sha256, write_atomic

FORMAT = 1
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INIT = HERE / "demo_kernel_init.sh"
BUSYBOX = Path("/bin/busybox")
# Where `ais bootenv build --cache build/test-bootenv` (tests/integration/test_boot.py, bench/boot.py) keeps its .debs.
DEFAULT_DEBS = ROOT / "build" / "test-bootenv" / "bootenv" / "debs"
APT_ARCHIVES = Path("/var/cache/apt/archives")
INPUTS = "inputs.json"
RELEASE = "release"
GZIP_LEVEL = 9


@dataclass(frozen=True)
class Built:
    out: Path
    release: str
    kernel: Path
    initrd: Path
    built_now: bool


def say(line: str, quiet: bool) -> None:
    if not quiet:
        print(f"demo-kernel: {line}", file=sys.stderr, flush=True)


def step(name: str, func, *args):
    """func(*args), a failure re-raised naming the step."""
    try:
        return func(*args)
    except AisError as err:
        raise type(err)(f"demo-kernel step '{name}' failed: {err}") from err
    except OSError as err:
        raise WorldError(f"demo-kernel step '{name}' failed: {err}") from err


# ------------------------------------------------------------------ inputs

def resolve() -> apt.Deb:
    """The versioned kernel package apt would install for linux-image-amd64."""
    meta = apt.candidates([recipe.KERNEL_PACKAGE])[recipe.KERNEL_PACKAGE]
    name = apt.kernel_package(meta)
    return apt.candidates([name])[name]


def inputs_of(kernel: apt.Deb) -> dict:
    if not BUSYBOX.is_file():
        raise WorldError(f"{BUSYBOX} is missing: install Debian's busybox-static (make debs)")
    return {
        "format": FORMAT,
        "kernel_deb": {"name": kernel.name, "version": kernel.version, "sha256": kernel.sha256},
        "busybox_sha256": file_sha256(BUSYBOX),
        "modules": list(recipe.MODULES),
        "builder": {p.name: file_sha256(p) for p in (Path(__file__).resolve(), INIT)},
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
    }


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def existing(out: Path, inputs: dict) -> Built | None:
    """The build in out when it was made from these inputs and is whole, else None."""
    if read_json(out / INPUTS) != inputs or not (out / RELEASE).is_file():
        return None
    release = (out / RELEASE).read_text().strip()
    kernel, initrd = out / f"vmlinuz-{release}", out / f"initrd.img-{release}"
    return Built(out, release, kernel, initrd, False) if kernel.is_file() and initrd.is_file() else None


# ------------------------------------------------------------------ fetch, unpack

def seed_from_apt_cache(deb: apt.Deb, debs: Path) -> None:
    """Link apt's own downloaded copy into the store when it has one (fetch checks its SHA256)."""
    cached, wanted = APT_ARCHIVES / deb.filename, debs / deb.filename
    if wanted.exists() or not cached.is_file():
        return
    try:
        os.link(cached, wanted)
    except OSError:
        shutil.copyfile(cached, wanted)


def fetch(deb: apt.Deb, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    seed_from_apt_cache(deb, debs)
    return apt.fetch([deb], debs)[0]


def kernel_release(pkgroot: Path, name: str) -> str:
    kernels = sorted((pkgroot / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"{name} holds {len(kernels)} kernels in /boot, expected one")
    return kernels[0].name.removeprefix("vmlinuz-")


# ------------------------------------------------------------------ the initramfs

def assemble(pkgroot: Path, release: str, tree: Path) -> list[str]:
    """The initramfs tree; returns the modules (paths below lib/modules/<release>, no .ko) in loading order."""
    moddir = pkgroot / "lib" / "modules" / release
    modules = module_order(moddir, recipe.MODULES)
    for rel in modules:
        dst = tree / "lib" / "modules" / release / f"{rel}.ko"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(moddir / f"{rel}.ko", dst)
        os.chmod(dst, 0o644)
    (tree / "bin").mkdir()
    shutil.copyfile(BUSYBOX, tree / "bin" / "busybox")
    os.chmod(tree / "bin" / "busybox", 0o755)
    os.symlink("busybox", tree / "bin" / "sh")
    shutil.copyfile(INIT, tree / "init")
    os.chmod(tree / "init", 0o755)
    (tree / "etc").mkdir()
    (tree / "etc" / "modules").write_text("".join(f"{m}\n" for m in modules))
    os.chmod(tree / "etc" / "modules", 0o644)
    for d in ("dev", "proc", "sys", "newroot"):
        (tree / d).mkdir()
    for d in [tree, *tree.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            os.chmod(d, 0o755)
    return modules


def pack(tree: Path, initrd: Path) -> int:
    """cpio newc of tree, gzip-compressed without a name or time in its header; returns the entries."""
    with open(initrd, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=GZIP_LEVEL) as out:
        return write_newc(tree, out, extra_nodes=(("dev/console", 0o600, 5, 1), ("dev/null", 0o666, 1, 3)))


def publish(work_out: Path, out: Path) -> None:
    """Replace out by work_out: the old directory is renamed away first, then removed."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.rename(out, old)
    os.rename(work_out, out)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------ the build

def check_dirs(out: Path, debs: Path) -> None:
    for option, d in (("--out", out), ("--debs", debs)):
        for path in (d, *d.parents):
            if path.exists() and not path.is_dir():
                raise UsageError(f"{option} {d}: {path} is not a directory")


def build(out: Path | str, debs: Path | str = DEFAULT_DEBS, *, quiet: bool = False) -> Built:
    """Build the demo kernel into out unless it is already there from the same inputs."""
    out, debs = Path(out).absolute(), Path(debs).absolute()
    check_dirs(out, debs)
    started = time.monotonic()
    kernel = step("resolve", resolve)
    inputs = step("key", inputs_of, kernel)
    done = existing(out, inputs)
    if done:
        say(f"up to date  {out} (kernel {done.release})", quiet)
        return done
    deb = step("fetch", fetch, kernel, debs)
    say(f"fetch       {deb}", quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        pkgroot, tree, result = work / "package", work / "tree", work / "out"
        for d in (pkgroot, tree, result):
            d.mkdir()
        step("unpack", apt.unpack, deb, pkgroot)
        release = step("unpack", kernel_release, pkgroot, kernel.name)
        modules = step("assemble", assemble, pkgroot, release, tree)
        say(f"assemble    busybox, /init, {len(modules)} modules of {release}", quiet)
        shutil.copyfile(pkgroot / "boot" / f"vmlinuz-{release}", result / f"vmlinuz-{release}")
        entries = step("pack", pack, tree, result / f"initrd.img-{release}")
        (result / RELEASE).write_text(f"{release}\n")
        write_atomic(result / INPUTS, (json.dumps(inputs, indent=1, sort_keys=True) + "\n").encode())
        step("publish", publish, result, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    built = Built(out, release, out / f"vmlinuz-{release}", out / f"initrd.img-{release}", True)
    say(f"built       {out}: vmlinuz-{release} {built.kernel.stat().st_size} bytes, initrd.img-{release} "
        f"{built.initrd.stat().st_size} bytes ({entries} entries), {time.monotonic() - started:.1f} s", quiet)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aislab.demo_kernel", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-kernel", help="directory to write (default: build/demo-kernel)")
    parser.add_argument("--debs", default=str(DEFAULT_DEBS),
                        help="download store of .deb files (default: the one of the tests' `ais bootenv build`)")
    parser.add_argument("--quiet", action="store_true", help="no step lines on stderr")
    args = parser.parse_args(argv)
    from ais.cli import run_handler

    def handler(a: argparse.Namespace) -> int:
        build(a.out, a.debs, quiet=a.quiet)
        return 0

    return run_handler(handler, args, prog="aislab.demo_kernel")


if __name__ == "__main__":
    sys.exit(main())
