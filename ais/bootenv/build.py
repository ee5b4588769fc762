"""`ais bootenv build`: a kernel and initramfs from Debian packages, content-addressed like an image.

What it does, in named steps (each reported on stderr with its time; any
failure names its step):
  resolve   ask apt for the candidate version and SHA256 of every package of
            the recipe (ais/bootenv/recipe.py) and of the kernel its
            metapackage names
  key       sha256 over the inputs: those packages (name, version, SHA256),
            every file of the ais package and of the wheels it copies, the
            recipe and builder sources, the Python that compiles the bytecode,
            the site's public key (CACHE/site/site-key.pub) and the site CA
            (CACHE/site/ca.pem) when there are.
            CACHE/bootenv/<key>/ already built: nothing else is done.
  fetch     `apt-get download` each .deb into CACHE/bootenv/debs/ (kept, SHA256 checked)
  unpack    `dpkg-deb -x` every package into a scratch root (no maintainer scripts)
  assemble  the initramfs tree: the recipe's files, the shared libraries they
            need (DT_NEEDED, followed to the end), the kernel modules and what
            they depend on (.modinfo), the client's Python, /init, and the
            site's public key as /etc/ais/site-key.pub when CACHE/site/site-key.pub
            exists, the site CA as /etc/ais/site-ca.pem when CACHE/site/ca.pem exists
            (ais-boot pins both; each is then one of the inputs)
  compile   Python bytecode (unchecked-hash .pyc: no timestamps)
  check     chroot into the tree (as root): `ais client --help`, `rpm --version`, `rpmkeys --version`,
            `mke2fs -V`, an ed25519 verification (cryptography), `import ssl` and a TLS client
            context on the pinned CA when there is one, busybox has every applet /init and ais-boot use
  pack      cpio newc (sorted, mtime 0, root-owned) compressed with zstd -> initrd.img;
            the kernel -> vmlinuz
  publish   rename the finished directory to CACHE/bootenv/<key>/ (atomic), then
            CACHE/bootenv/current.json names it (written atomically); `ais serve` serves it

Reads: apt's package lists, the ais package, the installed msgspec, zstandard,
cryptography and cffi, CACHE/site/site-key.pub, CACHE/site/ca.pem. Fails with `UsageError`
(exit 2, nothing done) for a --cache that is not a directory or a site key or CA that is not
one, and with `WorldError`/`ToolError` (exit 1) naming the step: an
unknown package, a download whose SHA256 differs, a library no package of the
recipe provides, a module that does not exist, a check that fails. Returns a
`Built` record (key, paths, whether it was built now).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ais
from ais import siteca, sitekey
from ais.bootenv import apt, elf, recipe
from ais.bootenv.cpio import write_newc
from ais.contracts import BootEnvironment, encode
from ais.errors import AisError, BuildError, UsageError, WorldError
from ais.files import file_sha256, write_atomic
from ais.run import run

log = logging.getLogger("ais.bootenv")

FORMAT = 1
HERE = Path(__file__).resolve().parent
SITE_KEY_FILE = "etc/ais/site-key.pub"  # CACHE/site/site-key.pub, when the site has a key: ais-boot pins it
SITE_CA_FILE = "etc/ais/site-ca.pem"  # CACHE/site/ca.pem, when the site has a CA: ais-boot trusts it and no other
# The client's signature check works in the tree: RFC 8032's first test vector (empty message).
ED25519_PROBE = ("from ais.sitekey import verifies; assert verifies("
                 "'d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', "
                 "'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b', b'')")
# TLS works in the tree: the ssl module (_ssl, libssl), and a client context on the pinned CA when there is one.
TLS_PROBE = ("import ssl, sys, http.client; ssl.create_default_context(cafile=sys.argv[1]) if len(sys.argv) > 1 "
             "else ssl.create_default_context(); print(ssl.OPENSSL_VERSION)")
BUILDER_SOURCES = ("recipe.py", "build.py", "cpio.py", "elf.py", "apt.py", "init.sh", "udhcpc.sh")
CURRENT = "current.json"
APPLETS = ("sh", "mount", "umount", "insmod", "ip", "ifconfig", "route", "udhcpc", "tail", "sleep", "cat",
           "grep", "tr", "mkdir", "sync", "poweroff", "reboot", "setsid", "cttyhack", "uname", "basename")
ZSTD_LEVEL = 10


@dataclass(frozen=True)
class Built:
    key: str
    directory: Path
    kernel: Path
    initrd: Path
    built_now: bool
    info: dict


class Steps:
    """Runs named steps, one line each on stderr; a failure is re-raised naming its step."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def run(self, name: str, func, *args):
        started = time.monotonic()
        try:
            result = func(*args)
        except AisError as err:
            raise type(err)(f"bootenv step '{name}' failed: {err}") from err
        except OSError as err:
            raise WorldError(f"bootenv step '{name}' failed: {err}") from err
        if not self.quiet:
            detail = result[1] if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str) else ""
            print(f"bootenv: {name:<9} {time.monotonic() - started:6.2f}s  {detail}", file=sys.stderr, flush=True)
        return result


# ------------------------------------------------------------------ inputs and key

def resolve() -> tuple[dict[str, apt.Deb], str]:
    debs = apt.candidates([*recipe.PACKAGES, recipe.KERNEL_PACKAGE])
    kernel = apt.kernel_package(debs.pop(recipe.KERNEL_PACKAGE))
    debs.update(apt.candidates([kernel]))
    return debs, f"{len(debs)} packages, kernel {kernel} {debs[kernel].version}"


def matches(rel: str, pattern: str) -> bool:
    """Shell-style match on whole path segments; a final `**` matches any depth below."""
    if pattern.endswith("/**"):
        return rel.startswith(pattern[:-2])
    parts, pats = rel.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pats))


def python_files() -> dict[str, Path]:
    """Destination (relative to the initramfs root) -> source, for the client's Python code."""
    site = "usr/lib/python3/dist-packages"
    out = {}
    package = Path(ais.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if path.is_file() and "__pycache__" not in rel and any(matches(rel, p) for p in recipe.AIS_PARTS):
            out[f"{site}/ais/{rel}"] = path
    for name in recipe.PYTHON_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as err:
            raise WorldError(f"{name} is not installed in this Python ({sys.executable}): the client needs it") from err
        for f in dist.files or ():
            rel = Path(f).as_posix()
            if rel.startswith("..") or ".dist-info/" in rel or "__pycache__" in rel:
                continue
            out[f"{site}/{rel}"] = Path(dist.locate_file(f)).resolve()
    return out


def input_key(debs: dict[str, apt.Deb], python: dict[str, Path], site_key: str | None = None,
              site_ca: str | None = None) -> tuple[str, str]:
    inputs = {
        "format": FORMAT,
        "debs": {n: [d.version, d.sha256] for n, d in sorted(debs.items())},
        "python": {rel: file_sha256(src) for rel, src in sorted(python.items())},
        "builder": {name: file_sha256(HERE / name) for name in BUILDER_SOURCES},
        "compiler": sys.version,
    }
    if site_key is not None:  # the pinned site key is content: a new key, a new boot environment
        inputs["site_key"] = site_key
    if site_ca is not None:  # so is the pinned CA: a new CA, a new boot environment
        inputs["site_ca"] = site_ca
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    pinned = f", site key {site_key[:16]}..." if site_key else ", no site key"
    pinned += f", site CA {hashlib.sha256(site_ca.encode()).hexdigest()[:16]}..." if site_ca else ", no site CA"
    return digest, f"{digest[:16]} ({len(python)} Python files{pinned})"


# ------------------------------------------------------------------ fetch, unpack

def fetch_all(debs: dict[str, apt.Deb], store: Path) -> tuple[list[Path], str]:
    before = {p.name for p in store.glob("*.deb")} if store.is_dir() else set()
    paths = apt.fetch([d for _, d in sorted(debs.items())], store)
    fresh = sum(p.name not in before for p in paths)
    return paths, f"{len(paths)} .deb files ({fresh} downloaded, {len(paths) - fresh} already here)"


def unpack_all(paths: list[Path], root: Path) -> tuple[None, str]:
    for path in paths:
        apt.unpack(path, root)
    return None, f"{len(paths)} packages into {root}"


# ------------------------------------------------------------------ assemble the tree

class Tree:
    """The initramfs being assembled: copies from the unpacked packages, following symlinks."""

    def __init__(self, pkgroot: Path, tree: Path):
        self.pkgroot, self.tree = pkgroot, tree
        self.copied: set[str] = set()

    def copy(self, rel: str) -> None:
        """Copy pkgroot/rel into the tree; a symlink is copied as a symlink, and its target too."""
        if rel in self.copied:
            return
        src, dst = self.pkgroot / rel, self.tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        self.copied.add(rel)
        if src.is_symlink():
            link = os.readlink(src)
            os.symlink(link, dst)
            target = link.lstrip("/") if link.startswith("/") else os.path.normpath(f"{Path(rel).parent}/{link}")
            if (self.pkgroot / target).exists() or (self.pkgroot / target).is_symlink():
                self.copy(target)
        elif src.is_file():
            shutil.copy2(src, dst)
            os.chmod(dst, src.stat().st_mode & 0o7777)
        else:
            raise BuildError(f"{rel} is not a file or symlink in the unpacked packages")

    def add(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        dst = self.tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        os.chmod(dst, mode)
        self.copied.add(rel)


def package_files(pkgroot: Path) -> list[str]:
    every = sorted(p.relative_to(pkgroot).as_posix() for p in pkgroot.rglob("*") if not p.is_dir() or p.is_symlink())
    chosen = [rel for rel in every if any(matches(rel, p) for p in recipe.FILES)
              and not any(matches(rel, p) for p in recipe.PYTHON_EXCLUDED)]
    for pattern in recipe.FILES:
        if not any(matches(rel, pattern) for rel in chosen):
            raise BuildError(f"no file of the recipe's packages matches {pattern!r}")
    return chosen


def find_library(pkgroot: Path, soname: str) -> str | None:
    for d in recipe.LIBRARY_DIRS:
        if (pkgroot / d / soname).exists():
            return f"{d}/{soname}"
    return None


def copy_libraries(t: Tree) -> int:
    """Every shared library an ELF file of the tree needs, and theirs, and the dynamic loader."""
    todo = [rel for rel in sorted(t.copied) if (t.tree / rel).is_file() and not (t.tree / rel).is_symlink()
            and elf.is_elf(t.tree / rel)]
    seen, count = set(), 0
    while todo:
        path = t.tree / todo.pop()
        wanted = list(elf.needed(path))
        loader = elf.interpreter(path) if path.suffix != ".ko" else None
        if loader and loader.lstrip("/") not in seen:
            seen.add(loader.lstrip("/"))
            t.copy(loader.lstrip("/"))
        for soname in wanted:
            if soname in seen:
                continue
            seen.add(soname)
            rel = find_library(t.pkgroot, soname)
            if rel is None:
                raise BuildError(f"{path.relative_to(t.tree)} needs {soname}, which no package of the recipe "
                                 f"provides (add its package to PACKAGES in ais/bootenv/recipe.py)")
            t.copy(rel)
            real = os.path.realpath(t.pkgroot / rel)
            todo.append(os.path.relpath(real, t.pkgroot))
            count += 1
    return count


def module_index(moddir: Path) -> dict[str, str]:
    """module name (with '_') -> its path relative to moddir, without .ko."""
    return {p.stem.replace("-", "_"): p.relative_to(moddir).with_suffix("").as_posix()
            for p in moddir.rglob("*.ko")}


def module_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """The modules to load, each after its .modinfo dependencies (depth first)."""
    index, order, visiting = module_index(moddir), [], set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in order:
            return
        if name not in index:
            raise BuildError(f"kernel module {name} is not in the kernel package (built in? misspelled?)")
        if name in visiting:
            raise BuildError(f"kernel modules depend on each other in a circle at {name}")
        visiting.add(name)
        for dep in elf.modinfo(moddir / f"{index[name]}.ko").get("depends", [""])[0].split(","):
            if dep:
                visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return [index[n] for n in order]


def assemble(pkgroot: Path, tree: Path, python: dict[str, Path], key: str, kernel_pkg: str,
             site_key: str | None = None, site_ca: str | None = None) -> tuple[dict, str]:
    t = Tree(pkgroot, tree)
    for rel in package_files(pkgroot):
        t.copy(rel)
    kernels = sorted((pkgroot / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"{kernel_pkg} holds {len(kernels)} kernels in /boot, expected one")
    release = kernels[0].name.removeprefix("vmlinuz-")
    moddir = pkgroot / "lib/modules" / release
    modules = module_order(moddir, recipe.MODULES)
    for m in modules:
        t.copy(f"lib/modules/{release}/{m}.ko")
    for rel, src in python.items():
        t.add(rel, src.read_bytes(), 0o755 if os.access(src, os.X_OK) else 0o644)
    t.add("usr/bin/ais", b"#!/usr/bin/python3.11\nimport sys\nfrom ais.cli import entry\nsys.exit(entry())\n", 0o755)
    t.add("usr/bin/ais-boot", (HERE.parent / "client" / "ais-boot").read_bytes(), 0o755)
    t.add("init", (HERE / "init.sh").read_bytes(), 0o755)
    t.add("etc/ais/udhcpc.sh", (HERE / "udhcpc.sh").read_bytes(), 0o755)
    t.add("etc/ais/modules", "".join(f"{m}\n" for m in modules).encode())
    t.add("etc/ais/bootenv-key", f"{key[:16]}\n".encode())
    if site_key is not None:  # ais-boot pins it: plans not signed by it are refused
        t.add(SITE_KEY_FILE, f"{site_key}\n".encode())
    if site_ca is not None:  # ais-boot pins it: an https:// server must show a certificate it signed
        t.add(SITE_CA_FILE, site_ca.encode())
    t.add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    t.add("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    for d in ("dev", "proc", "sys", "run", "tmp", "root", "var/tmp"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    os.symlink("busybox", tree / "bin/sh")
    libraries = copy_libraries(t)
    info = {"kernel_release": release, "modules": modules, "libraries": libraries, "files": len(t.copied)}
    return info, f"{len(t.copied)} files, {libraries} libraries, {len(modules)} modules, kernel {release}"


def compile_python(tree: Path) -> tuple[None, str]:
    import compileall
    import py_compile

    if sys.version_info[:2] != (3, 11):
        return None, f"skipped: this Python is {sys.version.split()[0]}, the boot environment's is 3.11"
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    ok = True
    for sub in ("usr/lib/python3.11", "usr/lib/python3/dist-packages"):
        ok &= compileall.compile_dir(str(tree / sub), ddir=f"/{sub}", quiet=2, invalidation_mode=mode, workers=1)
    if not ok:
        raise BuildError("Python files of the boot environment do not compile")
    return None, "unchecked-hash .pyc for the standard library and the client"


def check(tree: Path) -> tuple[None, str]:
    if os.geteuid() != 0:
        return None, "skipped: chroot needs root"
    pinned_ca = (tree / SITE_CA_FILE).exists()
    probes = (["/usr/bin/ais", "client", "--help"], ["/usr/bin/rpm", "--version"], ["/usr/bin/rpmkeys", "--version"],
              ["/sbin/mke2fs", "-V"],
              ["/sbin/kexec", "--version"], ["/usr/bin/extlinux", "--version"],
              ["/usr/bin/python3.11", "-c", ED25519_PROBE],
              ["/usr/bin/python3.11", "-c", TLS_PROBE, *([f"/{SITE_CA_FILE}"] if pinned_ca else [])],
              ["/bin/busybox", "--list"])
    outputs = [run(["chroot", str(tree), *argv], timeout=120).stdout for argv in probes]
    missing = sorted(set(APPLETS) - set(outputs[-1].split()))
    if missing:
        raise BuildError(f"busybox lacks applets the boot uses: {', '.join(missing)}")
    for pyc in tree.rglob("__pycache__"):  # the checks must not leave bytecode of their own behind
        for f in pyc.iterdir():
            if ".opt-" in f.name:
                f.unlink()
    tls = f"{outputs[-2].strip()}{' with the site CA' if pinned_ca else ''}"
    return None, (f"chroot: ais client, {outputs[1].strip()}, rpmkeys, mke2fs, kexec, extlinux, ed25519, {tls}, "
                  "busybox applets")


def pack(tree: Path, out: Path, kernel_src: Path) -> tuple[dict, str]:
    import zstandard

    raw = out / "initrd.cpio"
    with open(raw, "wb") as f:
        entries = write_newc(tree, f, extra_nodes=(("dev/console", 0o600, 5, 1), ("dev/null", 0o666, 1, 3)))
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=True)
    with open(raw, "rb") as src, open(out / "initrd.img", "wb") as dst:
        cctx.copy_stream(src, dst, size=raw.stat().st_size)
    size = raw.stat().st_size
    raw.unlink()
    shutil.copyfile(kernel_src, out / "vmlinuz")
    info = {"initrd_bytes": (out / "initrd.img").stat().st_size, "initrd_unpacked_bytes": size,
            "kernel_bytes": (out / "vmlinuz").stat().st_size, "entries": entries,
            "initrd_sha256": file_sha256(out / "initrd.img"), "kernel_sha256": file_sha256(out / "vmlinuz")}
    return info, (f"initrd {info['initrd_bytes'] / 1e6:.1f} MB ({size / 1e6:.1f} MB unpacked, {entries} entries), "
                  f"kernel {info['kernel_bytes'] / 1e6:.1f} MB")


# ------------------------------------------------------------------ the build

def bootenv_dir(cache: Path) -> Path:
    return Path(cache) / "bootenv"


def publish_current(base: Path, info: dict) -> None:
    current = BootEnvironment(key=info["key"], kernel=f"{info['key']}/vmlinuz", initrd=f"{info['key']}/initrd.img",
                              kernel_sha256=info["kernel_sha256"], initrd_sha256=info["initrd_sha256"],
                              kernel_release=info["kernel_release"])
    write_atomic(base / CURRENT, encode(current, indent=1))


def build(cache: Path, *, quiet: bool = False) -> Built:
    steps = Steps(quiet)
    base = bootenv_dir(cache)
    for path in (Path(cache), *Path(cache).parents):
        if path.exists() and not path.is_dir():
            raise UsageError(f"--cache {cache}: {path} is not a directory")
    debs, _ = steps.run("resolve", resolve)
    python = python_files()
    site_key = sitekey.read_public(cache)
    site_ca = siteca.read_ca(cache)
    key, _ = steps.run("key", input_key, debs, python, site_key, site_ca)
    final = base / key
    if (final / "bootenv.json").exists():
        info = json.loads((final / "bootenv.json").read_text())
        publish_current(base, info)
        if not quiet:
            print(f"bootenv: up to date  {final}", file=sys.stderr)
        return Built(key, final, final / "vmlinuz", final / "initrd.img", False, info)
    paths, _ = steps.run("fetch", fetch_all, debs, base / "debs")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=base))
    try:
        pkgroot, tree, out = work / "packages", work / "tree", work / "out"
        for d in (pkgroot, tree, out):
            d.mkdir()
        steps.run("unpack", unpack_all, paths, pkgroot)
        kernel_pkg = next(n for n in debs if n.startswith("linux-image-"))
        info, _ = steps.run("assemble", assemble, pkgroot, tree, python, key, kernel_pkg, site_key, site_ca)
        steps.run("compile", compile_python, tree)
        steps.run("check", check, tree)
        kernel_src = pkgroot / "boot" / f"vmlinuz-{info['kernel_release']}"
        packed, _ = steps.run("pack", pack, tree, out, kernel_src)
        info.update(packed, key=key, packages={n: d.version for n, d in sorted(debs.items())})
        (out / "bootenv.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        steps.run("publish", _publish, out, final, base, info)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Built(key, final, final / "vmlinuz", final / "initrd.img", True, info)


def _publish(out: Path, final: Path, base: Path, info: dict) -> tuple[None, str]:
    if final.exists():  # another build of the same inputs finished first: same bytes, and it may be served
        shutil.rmtree(out)
    else:
        os.rename(out, final)
    publish_current(base, info)
    return None, str(final)
