"""Many small real RPM updates, and installed host roots to apply them to (the lab's "in-place updates").

What it builds:
  build_update_rpms(out)  packages upd-01 .. upd-NN at versions 1.0 .. V.0 (release 1,
      noarch), made by rpmbuild: one generated spec per version with every name as a
      `%package -n upd-NN` subpackage, so V rpmbuild runs (in parallel), not N x V. Each
      package ships /usr/share/upd/upd-NN/data, 2 KiB .. 20 KiB of random-looking bytes
      fixed by name and version (shake_256), has `Requires: /bin/sh`, a %post that appends
      "upd-NN VERSION" to /var/log/upd.log and a %postun of `:`.
  make_host_root(template, repo, update_set)  an rpm --root of busybox-base and filesystem
      from the demo repository plus every upd-NN at the initial version, in one transaction.
  copy_root(template, dest)  a host's own copy of that root (`cp -a`).

Cached and atomic: OUT/update-set.json records names, versions and a digest of the inputs
(this module's source, packages/ais.macros, the rpmbuild flags); with the same inputs and
every RPM present nothing is built. A new set is built in a sibling directory and renamed
into place, so an interrupted build leaves the old set or none, never half of one. The
template root works the same way, with its stamp beside it (TEMPLATE.stamp.json: the
sha256 of the base RPMs, the update set's digest, the initial version). Two builders of
the same OUT at once are not supported.

Reads: packages/ais.macros (the demo repository's rpmbuild setup), the demo repository's
RPMS/*/busybox-base-*.rpm and filesystem-*.rpm. Host tools: rpmbuild, rpm, cp.
Fails: `UsageError` for counts out of range, an unknown name or version, an OUT or
TEMPLATE that is something else than what this module writes; `BuildError` when the demo
repository lacks a base RPM or rpmbuild makes other RPMs than expected; `ToolError` when a
tool fails. Returns an `UpdateSet` / the root's path.

Run as `python -m aislab.update_rpms --out DIR [--names N] [--versions V] [--root TEMPLATE --repo build/repo]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ais.errors import BuildError, ToolError, UsageError
from ais.files import file_sha256, write_atomic
from ais.rpmenv import rpm_install
from ais.run import run
from aislab.demo_repo import BUILD_ENV, RPMBUILD_TIMEOUT, rpmbuild_defines

PACKAGES = Path(__file__).resolve().parent.parent / "packages"
STAMP = "update-set.json"
RELEASE, ARCH = "1", "noarch"
MIN_SIZE, MAX_SIZE = 2048, 20480
MAX_NAMES, MAX_VERSIONS = 99, 99
BASE_PACKAGES = ("filesystem", "busybox-base")


@dataclass(frozen=True)
class UpdateSet:
    """The RPMs of build_update_rpms: upd-NN x version, all in dir."""

    dir: Path
    names: tuple[str, ...]
    versions: tuple[str, ...]
    digest: str  # of the generator's inputs (the stamp's key)

    def _check(self, name: str, version: str) -> None:
        if name not in self.names or version not in self.versions:
            raise UsageError(f"{name} {version} is not in the update set {self.dir}")

    def rpm(self, name: str, version: str) -> Path:
        self._check(name, version)
        return self.dir / f"{name}-{version}-{RELEASE}.{ARCH}.rpm"

    def nevra(self, name: str, version: str) -> str:
        """AIS's form, as ais.rpmenv.installed_nevras gives it: name-epoch:version-release.arch."""
        self._check(name, version)
        return f"{name}-0:{version}-{RELEASE}.{ARCH}"

    def rpms(self, version: str) -> list[Path]:
        """Every package at one version (an update of all names is one transaction of these)."""
        return [self.rpm(name, version) for name in self.names]

    def sha256(self, name: str, version: str) -> str:
        return file_sha256(self.rpm(name, version))

    def size(self, name: str, version: str) -> int:
        """Bytes of the RPM file."""
        return self.rpm(name, version).stat().st_size


def package_names(count: int) -> tuple[str, ...]:
    return tuple(f"upd-{i:02d}" for i in range(1, check_count("names", count, MAX_NAMES) + 1))


def version_list(count: int) -> tuple[str, ...]:
    return tuple(f"{i}.0" for i in range(1, check_count("versions", count, MAX_VERSIONS) + 1))


def check_count(what: str, count: int, most: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= most:
        raise UsageError(f"{what} must be an integer from 1 to {most}, not {count!r}")
    return count


def payload_size(name: str, version: str) -> int:
    """The data file's size: fixed by name and version, MIN_SIZE..MAX_SIZE."""
    seed = hashlib.sha256(f"size {name} {version}".encode()).digest()
    return MIN_SIZE + int.from_bytes(seed[:4], "big") % (MAX_SIZE - MIN_SIZE + 1)


def payload(name: str, version: str) -> bytes:
    """The data file: random-looking (incompressible) bytes fixed by name and version."""
    return hashlib.shake_256(f"data {name} {version}".encode()).digest(payload_size(name, version))


def spec_text(names: tuple[str, ...], version: str, payload_dir: Path) -> str:
    """One spec whose subpackages are every name at this version (the main package has no %files: no RPM)."""
    head = f"""%define debug_package %{{nil}}
Name: upd
Version: {version}
Release: {RELEASE}
Summary: AIS lab update packages
License: MIT
BuildArch: {ARCH}
AutoReqProv: no

%description
Small packages for the lab's in-place update tests (aislab.update_rpms).

%install
cp -a {payload_dir}/. %{{buildroot}}/
"""
    parts = [head]
    for name in names:
        parts.append(f"""
%package -n {name}
Summary: AIS lab update package {name}
Requires: /bin/sh

%description -n {name}
Lab update package {name}, version {version}.

%files -n {name}
%defattr(-,root,root,-)
%dir /usr/share/upd
/usr/share/upd/{name}

%post -n {name}
echo "{name} {version}" >> /var/log/upd.log

%postun -n {name}
:
""")
    return "".join(parts)


def inputs_digest(names: tuple[str, ...], versions: tuple[str, ...]) -> str:
    """sha256 of everything the RPMs depend on: this module, the macros, the flags, the counts."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((PACKAGES / "ais.macros").read_bytes())
    h.update(json.dumps([names, versions, rpmbuild_defines(Path("SPECS"), Path("TOPDIR")), BUILD_ENV]).encode())
    return h.hexdigest()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def build_version(names: tuple[str, ...], version: str, work: Path, dest: Path) -> list[Path]:
    """rpmbuild one version's spec in its own topdir under work; move its RPMs into dest."""
    topdir = work / version
    payload_dir = topdir / "payload"
    for name in names:
        data = payload_dir / "usr/share/upd" / name / "data"
        data.parent.mkdir(parents=True)
        data.write_bytes(payload(name, version))
    spec = topdir / f"upd-{version}.spec"
    spec.write_text(spec_text(names, version, payload_dir))
    try:
        run(["rpmbuild", *rpmbuild_defines(PACKAGES, topdir), str(spec)], env=BUILD_ENV, timeout=RPMBUILD_TIMEOUT)
    except ToolError as err:
        raise BuildError(f"update set {version}: rpmbuild failed: {err}") from err
    made = sorted((topdir / "RPMS").glob("*/*.rpm"))
    expected = sorted(f"{name}-{version}-{RELEASE}.{ARCH}.rpm" for name in names)
    if [p.name for p in made] != expected:
        raise BuildError(f"update set {version}: rpmbuild made {[p.name for p in made]}, not {expected}")
    for rpm in made:
        rpm.rename(dest / rpm.name)
    shutil.rmtree(topdir)
    return [dest / p.name for p in made]


def replace_dir(new: Path, final: Path) -> None:
    """Put the finished directory new at final (renames; the old one, if any, is removed)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def fresh_sibling(final: Path, suffix: str) -> Path:
    """An empty hidden directory beside final (a left-over of an interrupted run is removed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.with_name(f".{final.name}.{suffix}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def build_update_rpms(out: Path | str, *, names: int = 20, versions: int = 10,
                      jobs: int | None = None, echo=None) -> UpdateSet:
    """The update set in out: built unless out's stamp says these inputs and every RPM is there."""
    out = Path(out).resolve()
    name_list, versions_list = package_names(names), version_list(versions)
    digest = inputs_digest(name_list, versions_list)
    update_set = UpdateSet(out, name_list, versions_list, digest)
    stamp = read_json(out / STAMP)
    wanted = [update_set.rpm(n, v) for v in update_set.versions for n in update_set.names]
    if stamp and stamp.get("digest") == digest and all(p.is_file() for p in wanted):
        echo and echo(f"update set {out}: {len(wanted)} RPMs up to date")
        return update_set
    if out.exists() and stamp is None and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} is not an update set directory (no {STAMP}); not replacing it")
    new = fresh_sibling(out, "building")
    try:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            futures = [pool.submit(build_version, update_set.names, v, new / ".work", new)
                       for v in update_set.versions]
            for future in futures:
                future.result()
        shutil.rmtree(new / ".work")
        write_atomic(new / STAMP, (json.dumps({"names": update_set.names, "versions": update_set.versions,
                                               "digest": digest}, indent=1) + "\n").encode())
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    replace_dir(new, out)
    echo and echo(f"update set {out}: built {len(wanted)} RPMs "
                  f"({len(update_set.names)} names x {len(update_set.versions)} versions)")
    return update_set


def base_rpms(repo: Path) -> list[Path]:
    """busybox-base and filesystem from the demo repository (exactly one RPM each)."""
    found = []
    for name in BASE_PACKAGES:
        matches = sorted(repo.glob(f"RPMS/*/{name}-[0-9]*.rpm"))
        if len(matches) != 1:
            raise BuildError(f"{repo}: expected one {name} RPM, found {len(matches)} (run `make packages`)")
        found += matches
    return found


def root_stamp_path(template: Path) -> Path:
    return template.with_name(f"{template.name}.stamp.json")


def make_host_root(template: Path | str, repo: Path | str, update_set: UpdateSet, *,
                   initial_version: str = "1.0", echo=None) -> Path:
    """An installed root (base packages + every upd-NN at initial_version), built once per set of inputs."""
    template = Path(template).resolve()
    rpms = [*base_rpms(Path(repo)), *update_set.rpms(initial_version)]
    key = {"base": {p.name: file_sha256(p) for p in rpms[:len(BASE_PACKAGES)]},
           "update_set": update_set.digest, "initial_version": initial_version}
    stamp_path = root_stamp_path(template)
    stamp = read_json(stamp_path)
    if stamp == key and template.is_dir():
        echo and echo(f"host root {template}: up to date")
        return template
    if template.exists() and stamp is None and not (template / "var/lib/rpm").is_dir():
        raise UsageError(f"{template} is not a host root this module built; not replacing it")
    new = fresh_sibling(template, "building")
    try:
        rpm_install(new, rpms)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    stamp_path.unlink(missing_ok=True)
    replace_dir(new, template)
    write_atomic(stamp_path, (json.dumps(key, indent=1) + "\n").encode())
    echo and echo(f"host root {template}: installed {len(rpms)} packages")
    return template


def copy_root(template: Path | str, dest: Path | str) -> Path:
    """A host's own copy of the template root at dest (which must not exist yet)."""
    dest = Path(dest)
    if dest.exists():
        raise UsageError(f"{dest} exists; a host root is copied to a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", os.fspath(template), os.fspath(dest)], timeout=600)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aislab.update_rpms", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory of the update RPMs")
    parser.add_argument("--names", type=int, default=20, help="packages upd-01..upd-NN (default 20)")
    parser.add_argument("--versions", type=int, default=10, help="versions 1.0..V.0 of each (default 10)")
    parser.add_argument("--root", default=None, help="also build this template host root")
    parser.add_argument("--repo", default="build/repo", help="the demo repository, for --root (default build/repo)")
    args = parser.parse_args(argv)
    from ais.cli import run_handler

    def build(a: argparse.Namespace) -> int:
        update_set = build_update_rpms(a.out, names=a.names, versions=a.versions, echo=print)
        if a.root:
            make_host_root(a.root, a.repo, update_set, echo=print)
        return 0

    return run_handler(build, args, prog="aislab.update_rpms")


if __name__ == "__main__":
    sys.exit(main())
