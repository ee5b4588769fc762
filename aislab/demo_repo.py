"""Build the demo RPM repository from the spec files in packages/.

Reads: every `*.spec` in the specs directory, plus the two files all specs share
there: `ais.macros` (loaded with `rpmbuild --load`) and `gen.awk` (generates
deterministic file contents in %install).
Host tools: rpmbuild (Debian's rpm 4.18), createrepo_c, awk, and /bin/busybox
(Debian busybox-static, copied by busybox-base.spec).
The demo kernel: a spec that names `%{ais_kernel_dir}` (kernel.spec) copies the real
kernel and initramfs from that directory (default: `build/demo-kernel` beside
`build/repo`, written by `python -m aislab.demo_kernel`); the sha256 of its files is
part of that spec's build key, so a new kernel rebuilds the package.
Writes: `<out>/RPMS/<arch>/<name>-<version>-<release>.<arch>.rpm`, `<out>/repodata/`
(createrepo_c), and `<out>/.stamps/<spec>.json` (the build key of each spec and the
RPMs it produced). Each spec is built in its own `_topdir` under the work
directory (default: `build/rpmbuild` next to `build/repo`, `build/rpmbuild-xN` for a
scaled build), which is removed after a successful build.
Scale: `--scale N` (default 1) passes `--define "ais_scale N"` to rpmbuild; the
macros then generate N times the bytes of every file and N times the files of every
tree (same names, versions and dependencies), for benchmarks at realistic sizes.
The scale is one of the rpmbuild flags, so it is part of every build key: a repository
never mixes scales (changing the scale rebuilds everything). A scaled repository
lives in its own directory by default (`build/repo-x8` for N=8, see `default_out`);
scale 1 gives exactly the RPMs of a build without the option.
Incremental: a spec is rebuilt only when its build key changed (sha256 of the spec,
the shared files, the rpmbuild flags including the scale, BUILDER_VERSION, and for
kernel.spec the demo kernel's files) or
one of its RPMs is missing. RPMs no current spec produced are removed. createrepo_c runs only when
the set of RPMs changed or repodata is missing.
Reproducible: SOURCE_DATE_EPOCH is fixed, build time and file mtimes are clamped
to it and the build host is fixed, so a rebuild gives byte-identical RPMs (the
busybox-base payload depends on the host's /bin/busybox).
Fails: `BuildError` when there are no specs, a spec produces no RPM, two specs
produce the same RPM file, or a spec needs the demo kernel and its directory holds none; `ToolError` (wrapped in `BuildError` naming the spec
for rpmbuild) when a tool fails.
Returns: `build_repo()` returns a `BuildResult` (built, skipped, removed, RPM paths).

Run as `python -m aislab.demo_repo --specs packages --out build/repo [--scale N] [--kernel-dir DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ais.errors import BuildError, ToolError, UsageError
from ais.files import file_sha256, write_atomic
from ais.run import run

BUILDER_VERSION = "1"
SOURCE_DATE_EPOCH = "1700000000"  # 2023-11-14T22:13:20Z, the demo repository's build time
SHARED_FILES = ("ais.macros", "gen.awk")
STAMPS = ".stamps"
BUILD_ENV = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "LC_ALL": "C", "TZ": "UTC"}
RPMBUILD_TIMEOUT = 300
MAX_SCALE = 64  # the largest generated demo file (5.8 MB libxul) stays well inside rpm's limits
KERNEL_MACRO = "ais_kernel_dir"  # a spec naming %{ais_kernel_dir} ships the demo kernel (aislab.demo_kernel)
KERNEL_FILES = ("release", "vmlinuz-*", "initrd.img-*")


def check_scale(scale: int) -> int:
    """The scale as a positive int, or UsageError (exit 2)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise UsageError(f"scale must be an integer from 1 to {MAX_SCALE}, not {scale!r}")
    return scale


def default_out(base: Path | str, scale: int) -> Path:
    """Where a repository of this scale goes: base itself at scale 1, else base-xN beside it."""
    base = Path(base)
    return base if scale == 1 else base.with_name(f"{base.name}-x{scale}")


@dataclass
class BuildResult:
    """What one run of the builder did."""

    built: list[str] = field(default_factory=list)  # spec file names rebuilt
    skipped: list[str] = field(default_factory=list)  # spec file names up to date
    removed: list[str] = field(default_factory=list)  # stale RPMs deleted (repo-relative)
    rpms: list[str] = field(default_factory=list)  # every RPM in the repo (repo-relative)
    repodata_updated: bool = False
    seconds: float = 0.0


def find_specs(specs_dir: Path) -> list[Path]:
    """The spec files to build, sorted; BuildError if there are none."""
    specs = sorted(specs_dir.glob("*.spec"))
    if not specs:
        raise BuildError(f"{specs_dir}: no *.spec files to build")
    return specs


def rpmbuild_defines(specs_dir: Path, topdir: Path, scale: int = 1, kernel_dir: Path = Path("KERNEL")) -> list[str]:
    """The rpmbuild flags for one spec built in its own topdir, at a size scale."""
    return [
        "-bb",
        "--nodeps",  # Debian's rpm database knows none of the (absent) build deps
        "--load", str(specs_dir / "ais.macros"),
        "--define", f"ais_specs {specs_dir}",
        "--define", f"_topdir {topdir}",
        "--define", f"_rpmdir {topdir / 'RPMS'}",
        "--define", "_dbpath /var/lib/rpm",
        "--define", "use_source_date_epoch_as_buildtime 1",
        "--define", "clamp_mtime_to_source_date_epoch 1",
        "--define", f"ais_scale {scale}",
        "--define", f"{KERNEL_MACRO} {kernel_dir}",
    ]


def shared_digest(specs_dir: Path, scale: int = 1) -> str:
    """sha256 over everything every spec's build depends on besides the spec itself."""
    h = hashlib.sha256(f"builder {BUILDER_VERSION}\n".encode())
    for name in SHARED_FILES:
        path = specs_dir / name
        if not path.is_file():
            raise BuildError(f"{path}: missing (every spec uses it)")
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    flags = rpmbuild_defines(Path("SPECS"), Path("TOPDIR"), scale)
    h.update(json.dumps([flags, BUILD_ENV]).encode())
    return h.hexdigest()


def uses_kernel(spec: Path) -> bool:
    return f"%{{{KERNEL_MACRO}}}" in spec.read_text()


def kernel_digest(kernel_dir: Path, spec: Path) -> str:
    """sha256 over the demo kernel's files (name and sha256 of each); BuildError when there are none."""
    files = sorted(p for pattern in KERNEL_FILES for p in kernel_dir.glob(pattern) if p.is_file())
    if len(files) != len(KERNEL_FILES):
        raise BuildError(f"{spec.name} ships the demo kernel from {kernel_dir}, which does not hold one "
                         f"({', '.join(KERNEL_FILES)}): run `python -m aislab.demo_kernel --out {kernel_dir}` "
                         f"(`make packages` does)")
    lines = (f"{p.name} {file_sha256(p)}\n" for p in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def spec_key(spec: Path, shared: str, kernel_dir: Path | None = None) -> str:
    """The build key of one spec: its own sha256 combined with the shared digest (and the demo kernel's)."""
    own = hashlib.sha256(spec.read_bytes()).hexdigest()
    kernel = kernel_digest(kernel_dir, spec) if kernel_dir is not None and uses_kernel(spec) else ""
    return hashlib.sha256(f"{own} {shared}{' ' + kernel if kernel else ''}".encode()).hexdigest()


def read_stamp(out: Path, spec: Path) -> dict | None:
    """The stamp of a spec's last successful build, or None."""
    try:
        return json.loads((out / STAMPS / f"{spec.stem}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_stamp(out: Path, spec: Path, key: str, rpms: list[str], scale: int = 1) -> None:
    """Record key and outputs of a spec (write + rename, so never half-written)."""
    stamp = out / STAMPS / f"{spec.stem}.json"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, (json.dumps({"spec": spec.name, "key": key, "scale": scale, "rpms": rpms},
                                    indent=1) + "\n").encode())


def is_current(out: Path, stamp: dict | None, key: str) -> bool:
    """True when the stamp matches the key and every RPM it lists exists."""
    return bool(
        stamp
        and stamp.get("key") == key
        and stamp.get("rpms")
        and all((out / rel).is_file() for rel in stamp["rpms"])
    )


def rpmbuild_spec(spec: Path, specs_dir: Path, work: Path, scale: int = 1,
                  kernel_dir: Path = Path("KERNEL")) -> list[Path]:
    """rpmbuild one spec in a fresh topdir under work; return the RPMs it made."""
    topdir = work / spec.stem
    shutil.rmtree(topdir, ignore_errors=True)
    topdir.mkdir(parents=True)
    argv = ["rpmbuild", *rpmbuild_defines(specs_dir, topdir, scale, kernel_dir), str(spec)]
    try:
        run(argv, env=BUILD_ENV, timeout=RPMBUILD_TIMEOUT)
    except ToolError as err:
        raise BuildError(f"{spec}: rpmbuild failed: {err}") from err
    rpms = sorted((topdir / "RPMS").glob("*/*.rpm"))
    if not rpms:
        raise BuildError(f"{spec}: rpmbuild succeeded but produced no RPM")
    return rpms


def publish_rpms(rpms: list[Path], out: Path) -> list[str]:
    """Move built RPMs into <out>/RPMS/<arch>/ (rename); return repo-relative paths."""
    published = []
    for rpm in rpms:
        rel = Path("RPMS") / rpm.parent.name / rpm.name
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(rpm, out / rel)
        published.append(rel.as_posix())
    return published


def build_one(spec: Path, specs_dir: Path, out: Path, work: Path, key: str,
              scale: int = 1, kernel_dir: Path = Path("KERNEL")) -> tuple[list[str], float]:
    """Build one spec, publish its RPMs, drop RPMs of its previous build, write its stamp."""
    started = time.monotonic()
    old = read_stamp(out, spec)
    rpms = publish_rpms(rpmbuild_spec(spec, specs_dir, work, scale, kernel_dir), out)
    for rel in (old or {}).get("rpms", []):
        if rel not in rpms:
            (out / rel).unlink(missing_ok=True)
    write_stamp(out, spec, key, rpms, scale)
    shutil.rmtree(work / spec.stem, ignore_errors=True)
    return rpms, time.monotonic() - started


def check_unique_outputs(out: Path, specs: list[Path]) -> list[str]:
    """Every RPM claimed by exactly one spec; return them all, sorted."""
    owner: dict[str, str] = {}
    for spec in specs:
        for rel in read_stamp(out, spec)["rpms"]:
            if rel in owner:
                raise BuildError(f"{spec.name} and {owner[rel]} both produce {rel}")
            owner[rel] = spec.name
    return sorted(owner)


def prune(out: Path, specs: list[Path], keep: list[str]) -> list[str]:
    """Delete RPMs and stamps that no current spec accounts for; return removed RPMs."""
    removed = []
    wanted = set(keep)
    for rpm in sorted((out / "RPMS").glob("*/*.rpm")):
        rel = rpm.relative_to(out).as_posix()
        if rel not in wanted:
            rpm.unlink()
            removed.append(rel)
    stems = {spec.stem for spec in specs}
    for stamp in (out / STAMPS).glob("*.json"):
        if stamp.stem not in stems:
            stamp.unlink()
    return removed


def update_repodata(out: Path, rpms: list[str]) -> bool:
    """Run createrepo_c unless repodata already describes exactly these RPMs."""
    h = hashlib.sha256()
    for rel in rpms:
        st = (out / rel).stat()
        h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    key_file = out / STAMPS / "repodata.key"
    if (out / "repodata" / "repomd.xml").is_file() and key_file.is_file():
        if key_file.read_text().strip() == h.hexdigest():
            return False
    run(["createrepo_c", "--quiet", "--workers", "2", str(out)], timeout=300)
    key_file.write_text(h.hexdigest() + "\n")
    return True


def build_repo(specs_dir: Path | str, out: Path | str, *, work: Path | str | None = None,
               jobs: int | None = None, force: bool = False, scale: int = 1, echo=print,
               kernel_dir: Path | str | None = None) -> BuildResult:
    """Build every spec of specs_dir that changed into the repository at out, at a size scale."""
    started = time.monotonic()
    scale = check_scale(scale)
    specs_dir, out = Path(specs_dir).resolve(), Path(out).resolve()
    work = Path(work).resolve() if work else default_out(out.parent / "rpmbuild", scale)
    kernel_dir = Path(kernel_dir).resolve() if kernel_dir else out.parent / "demo-kernel"
    specs = find_specs(specs_dir)
    shared = shared_digest(specs_dir, scale)
    (out / STAMPS).mkdir(parents=True, exist_ok=True)
    result = BuildResult()
    todo = []
    for spec in specs:
        key = spec_key(spec, shared, kernel_dir)
        if not force and is_current(out, read_stamp(out, spec), key):
            result.skipped.append(spec.name)
        else:
            todo.append((spec, key))
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [(spec, pool.submit(build_one, spec, specs_dir, out, work, key, scale, kernel_dir)) for spec, key in todo]
        for spec, future in futures:
            rpms, seconds = future.result()
            result.built.append(spec.name)
            echo(f"built {spec.name:28} {seconds:6.2f}s  {' '.join(Path(r).name for r in rpms)}")
    result.rpms = check_unique_outputs(out, specs)
    result.removed = prune(out, specs, result.rpms)
    for rel in result.removed:
        echo(f"removed stale {rel}")
    result.repodata_updated = update_repodata(out, result.rpms)
    result.seconds = time.monotonic() - started
    echo(f"repo {out} (scale {scale}): {len(result.rpms)} RPMs from {len(specs)} specs; built {len(result.built)}, "
         f"up to date {len(result.skipped)}, removed {len(result.removed)}; "
         f"repodata {'updated' if result.repodata_updated else 'unchanged'}; {result.seconds:.2f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aislab.demo_repo", description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="packages", help="directory of *.spec files (default: packages)")
    parser.add_argument("--out", default=None,
                        help="repository to write (default: build/repo, or build/repo-xN with --scale N)")
    parser.add_argument("--work", default=None, help="rpmbuild work directory (default: <out>/../rpmbuild)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel rpmbuilds (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="rebuild every spec")
    parser.add_argument("--scale", type=int, default=1, metavar="N",
                        help=f"generate N times the bytes and tree files of every package, 1..{MAX_SCALE} "
                             "(default: 1, the demo repository)")
    parser.add_argument("--kernel-dir", default=None,
                        help="the demo kernel (python -m aislab.demo_kernel) kernel.spec ships "
                             "(default: demo-kernel beside the repository's directory)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else default_out("build/repo", args.scale)
    from ais.cli import run_handler

    def build(a: argparse.Namespace) -> int:
        build_repo(a.specs, out, work=a.work, jobs=a.jobs, force=a.force, scale=a.scale, kernel_dir=a.kernel_dir)
        return 0

    return run_handler(build, args, prog="aislab.demo_repo")


if __name__ == "__main__":
    sys.exit(main())
