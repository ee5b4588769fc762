"""One .deb -> one RPM: its real file tree, its control data translated, rebuilt by rpmbuild.

Reads: a .deb (dpkg-deb -e for control data and maintainer scripts, dpkg-deb -x for the
files, `dpkg-deb --fsys-tarfile` for owners and modes as the deb records them).
Writes: the RPM into `out/RPMS/<arch>/`, a spec and a work tree under `work/<name>` (removed
after a successful build).
The file tree is usr-merged as bookworm installs it (/bin, /sbin, /lib, /lib64 moved
under /usr; base-files owns the /bin -> usr/bin ... symlinks and dash, which provides
/bin/sh for scriptlets, needs it first); a file a package ships both under /bin and
/usr/bin keeps the /usr copy and is reported. Conffiles become %config(noreplace).
Special packages (SPECIAL): base-passwd installs /etc/passwd and /etc/group from its
masters (what its preinst did; %verify(not md5 size mtime), as the %pre scriptlets that add
system users and groups edit them); libc-bin runs ldconfig as a transaction file trigger on
the library directories (Debian's ldconfig trigger); linux-image-* runs depmod.
Fails: `BuildError` naming the .deb when a tool fails or the deb is malformed.
Returns: `Converted`: the RPM's repository path, the package's NEVRA, its file list
(path -> kind, mode, owner, group, sha256 or link target) and `Finding`s (what was
dropped or rewritten, and why).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ais.errors import BuildError, ToolError
from ais.run import run, start
from aislab.debsite.index import parse_stanzas
from aislab.debsite.translate import (MERGED, RPM_ARCH, SCRIPTS, BadVersion, Evr, analyse_scripts, merged_path,
                                      split_version, translate_control)

LIB_DIRS = ("/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/lib")
CONTROL_FIELDS = ("Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides", "Conflicts",
                  "Breaks", "Replaces", "Description", "Essential", "Priority", "Section", "Homepage")
BUILD_ENV = {"SOURCE_DATE_EPOCH": "1700000000", "LC_ALL": "C", "TZ": "UTC"}
RPMBUILD_TIMEOUT = 1200
BAD_PATH_CHARS = ('"', "\n")


@dataclass(frozen=True)
class Finding:
    """Something the site builder reports about one package."""

    package: str
    kind: str  # untranslatable-dependency, dropped-script, name-clash, file-conflict, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.package}: {self.kind}: {self.detail}"


@dataclass
class Converted:
    name: str
    evr: str
    arch: str
    rpm: str  # repository-relative path
    files: dict[str, list]  # path -> [kind, mode, user, group, sha256 or link target or '']
    replaces: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def read_control(deb: Path, ctl: Path) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """The control stanza, the maintainer scripts (name -> text) and the conffiles of a deb."""
    shutil.rmtree(ctl, ignore_errors=True)
    run(["dpkg-deb", "-e", str(deb), str(ctl)], timeout=120)
    stanzas = parse_stanzas((ctl / "control").read_text(errors="replace"), CONTROL_FIELDS)
    if not stanzas:
        raise BuildError(f"{deb}: no control stanza")
    scripts = {s: (ctl / s).read_text(errors="replace") for s in SCRIPTS if (ctl / s).is_file()}
    conffiles = set()
    if (ctl / "conffiles").is_file():
        conffiles = {ln.split()[-1] for ln in (ctl / "conffiles").read_text().splitlines()
                     if ln.strip() and not ln.startswith("remove-on-upgrade")}
    return stanzas[0], scripts, conffiles


def list_tar(deb: Path) -> dict[str, tarfile.TarInfo]:
    """Every member of the deb's data tarball by absolute path, as the deb records it."""
    proc = start(["dpkg-deb", "--fsys-tarfile", str(deb)], text=False)
    members = {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for m in tar:
                path = os.path.normpath("/" + m.name.lstrip("./")) if m.name not in (".", "./") else "/"
                if path != "/":
                    members[path] = m
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise BuildError(f"{deb}: dpkg-deb --fsys-tarfile failed: {err.strip()}")
    return members


def merge_tree(src: Path, dst: Path, moved: list[str], clashes: list[str], rel: str) -> None:
    """Move src's contents into dst (a directory), recursively; clashes keep dst's entry."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in sorted(src.iterdir()):
        target = dst / child.name
        child_rel = f"{rel}/{child.name}"
        if child.is_dir() and not child.is_symlink():
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                clashes.append(child_rel)
                shutil.rmtree(child)
                continue
            merge_tree(child, target, moved, clashes, child_rel)
        elif target.exists() or target.is_symlink():
            clashes.append(child_rel)
            child.unlink()
        else:
            os.rename(child, target)
            moved.append(child_rel)
    src.rmdir()


def usrmerge(root: Path) -> tuple[list[str], list[str]]:
    """Move /bin, /sbin, /lib* of an unpacked tree under /usr; return (moved, clashing) old paths."""
    moved, clashes = [], []
    for top in MERGED:
        d = root / top
        if d.is_symlink():
            clashes.append(f"/{top}")
            d.unlink()
        elif d.is_dir():
            merge_tree(d, root / "usr" / top, moved, clashes, f"/{top}")
    return moved, clashes


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_table(root: Path, members: dict[str, tarfile.TarInfo], exclude: set[str]) -> dict[str, list]:
    """path -> [kind, mode, user, group, sha256|link|''] of the merged tree, owners from the deb."""
    by_merged = {merged_path(p): m for p, m in members.items()}
    table = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            path = "/" + full.relative_to(root).as_posix()
            if path in exclude:
                continue
            st = full.lstat()
            m = by_merged.get(path)
            user, group = (m.uname or "root", m.gname or "root") if m else ("root", "root")
            if stat.S_ISLNK(st.st_mode):
                table[path] = ["l", 0o777, user, group, os.readlink(full)]
            elif stat.S_ISDIR(st.st_mode):
                table[path] = ["d", stat.S_IMODE(st.st_mode), user, group, ""]
            else:
                table[path] = ["f", stat.S_IMODE(st.st_mode), user, group, sha256_file(full)]
    return table


def remove_path(root: Path, path: str) -> None:
    """Take one path (and what is under it) out of the unpacked tree."""
    full = root / path.lstrip("/")
    if full.is_dir() and not full.is_symlink():
        shutil.rmtree(full)
    elif full.exists() or full.is_symlink():
        full.unlink()


def spec_path(path: str) -> str:
    """A path as %files reads it: quoted, '%' doubled. rpm takes a quoted path with whitespace
    literally; any other path is a glob, so each glob character becomes a one-character class."""
    escaped = path.replace("%", "%%")
    if any(ch.isspace() for ch in path):
        return f'"{escaped}"'
    escaped = "".join(f"[{ch}]" if ch in "[]*?{}" else ch for ch in escaped)
    escaped = escaped.replace("\\", "?")  # a backslash cannot be escaped; '?' matches it (and only it, here)
    return f'"{escaped}"'


# Files system-user scriptlets edit after install (useradd, groupadd): rpm -Va checks their
# owner and mode, not their contents, as Red Hat's `setup` package declares them.
EDITED_BY_SCRIPTLETS = frozenset({"/etc/passwd", "/etc/group"})


def files_section(table: dict[str, list], conffiles: set[str]) -> str:
    lines = ["%files", "%defattr(-,root,root,-)"]
    for path in sorted(table):
        kind, mode, user, group, _ = table[path]
        attr = f"%attr(-,{user},{group})" if kind == "l" else f"%attr({mode:04o},{user},{group})"
        prefix = "%dir " if kind == "d" else ("%config(noreplace) " if path in conffiles else "")
        if path in EDITED_BY_SCRIPTLETS:
            prefix = "%verify(not md5 size mtime) " + prefix
        lines.append(f"{prefix}{attr} {spec_path(path)}")
    return "\n".join(lines) + "\n"


def special_files(name: str, root: Path) -> list[str]:
    """Files the converter adds for SPECIAL packages; returns what it says about them."""
    said = []
    if name == "base-files":
        for top in ("bin", "sbin", "lib", "lib64"):
            os.symlink(f"usr/{top}", root / top)
        said.append("owns the usrmerge symlinks /bin, /sbin, /lib, /lib64 -> usr/... (bookworm's merged /usr)")
    if name == "base-passwd":
        (root / "etc").mkdir(exist_ok=True)
        for f in ("passwd", "group"):
            shutil.copy2(root / f"usr/share/base-passwd/{f}.master", root / "etc" / f)
        said.append("installs /etc/passwd and /etc/group from its masters (what its preinst did), %config, "
                    "contents not verified (system-user scriptlets edit them)")
    return said


def spec_text(control: dict[str, str], evr: Evr, arch: str, tags, scripts, root: Path, table, conffiles,
              extra_provides: list[str], extra_requires_pre: list[str], trigger: str) -> str:
    summary = (control.get("Description", "").splitlines() or [control["Package"]])[0].strip() or control["Package"]
    body = "\n".join(ln[1:] if ln.startswith(" ") else ln for ln in control.get("Description", "").splitlines()[1:])
    body = body.replace("%", "%%").replace("\n.\n", "\n\n").strip() or summary
    head = [
        "%define debug_package %{nil}",
        "%define __spec_install_post %{nil}",
        "%define __os_install_post %{nil}",
        "%define _build_id_links none",
        "%define _binary_payload w3.zstdio",
        "%define _binaries_in_noarch_packages_terminate_build 0",
        f"Name: {control['Package']}",
    ]
    if evr.epoch:
        head.append(f"Epoch: {evr.epoch}")
    head += [f"Version: {evr.version}", f"Release: {evr.release}",
             f"Summary: {summary.replace('%', '%%')}",
             f"License: see /usr/share/doc/{control['Package']}/copyright",
             f"BuildArch: {arch}", "AutoReqProv: no"]
    if control.get("Homepage"):
        head.append(f"URL: {control['Homepage']}")
    for dep in tags.requires:
        head.append(f"Requires: {dep}")
    for dep in list(dict.fromkeys([*tags.requires_pre, *extra_requires_pre])):
        head.append(f"Requires(pre): {dep}")
    for when, pkgs in scripts.needs.items():
        for p in pkgs:
            if p != control["Package"]:
                head.append(f"Requires({when}): {p}")
    for prov in [*tags.provides, *extra_provides]:
        head.append(f"Provides: {prov}")
    for dep in tags.conflicts:
        head.append(f"Conflicts: {dep}")
    for dep in tags.obsoletes:
        head.append(f"Obsoletes: {dep}")
    text = "\n".join(head) + f"\n\n%description\n{body}\n\n%install\ncp -al {root}/. %{{buildroot}}/\n\n"
    for section, script in scripts.sections.items():
        text += f"{section}\n{script.replace('%', '%%')}\n"
    if trigger:
        text += trigger + "\n"
    return text + files_section(table, conffiles)


def convert(deb: Path, out: Path, work: Path, *, exclude: set[str] = frozenset(),
            real_names: frozenset[str] | None = None, site_versions: dict[str, list[str]] | None = None
            ) -> Converted:
    """Convert one .deb (minus the excluded paths) into one RPM published under out/RPMS."""
    top = work / deb.stem
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    try:
        control, scripts_text, conffiles = read_control(deb, top / "control")
        name = control["Package"]
        findings: list[Finding] = []
        try:
            evr = split_version(control["Version"])
        except BadVersion as err:
            raise BuildError(f"{deb}: {err}") from err
        if evr.rewritten:
            findings.append(Finding(name, "version-rewritten", f"{control['Version']} -> {evr} ('-' or ':' inside "
                                                               "the upstream version is not allowed in RPM)"))
        arch = RPM_ARCH.get(control.get("Architecture", ""))
        if arch is None:
            raise BuildError(f"{deb}: architecture {control.get('Architecture')!r} is not amd64 or all")
        root = top / "root"
        run(["dpkg-deb", "-x", str(deb), str(root)], timeout=600)
        members = list_tar(deb)
        moved, clashes = usrmerge(root)
        for old in clashes:
            findings.append(Finding(name, "usrmerge-duplicate", f"{old} and {merged_path(old)} both shipped; kept the "
                                                                "/usr one"))
        for note in special_files(name, root):
            findings.append(Finding(name, "translated", note))
        bad = [p for p in (merged_path(p) for p in members) if any(c in p for c in BAD_PATH_CHARS)]
        for p in bad:
            findings.append(Finding(name, "file-dropped", f"{p}: a path rpm's %files cannot name"))
        for p in [*exclude, *bad]:
            remove_path(root, p)
        table = file_table(root, members, set())
        for p in sorted(exclude):
            findings.append(Finding(name, "file-conflict", f"{p} left out: another package Replaces this one and "
                                                           "ships it"))
        conffiles = {merged_path(c) for c in conffiles}
        if name == "base-passwd":
            conffiles |= {"/etc/passwd", "/etc/group"}
        kernel = next((p.split("/")[4] for p in table if p.startswith("/usr/lib/modules/") and p.count("/") == 4
                       and name.startswith("linux-image-")), None)
        scripts = analyse_scripts(name, scripts_text, kernel_version=kernel)
        tags = translate_control(control, real_names, site_versions)
        for note in tags.notes:
            findings.append(Finding(name, "dropped-relation", note))
        for lost in [*tags.lost, *scripts.lost]:
            kind = "untranslatable-dependency" if lost.field in ("Depends", "Pre-Depends", "Provides", "Conflicts",
                                                                 "Breaks", "Replaces") else "untranslatable-script"
            findings.append(Finding(name, kind, f"{lost.field} '{lost.text}': {lost.reason}"))
        for script, why in scripts.dropped:
            findings.append(Finding(name, "dropped-script", f"{script}: {why}"))
        if kernel:
            findings.append(Finding(name, "translated", f"depmod -a {kernel} in %posttrans"))
        extra_provides = sorted({old for old in moved if old.startswith(("/bin/", "/sbin/"))
                                 and table.get(merged_path(old), ["d"])[0] != "d"})
        extra_requires_pre = []
        if name == "dash":
            extra_requires_pre.append("base-files")  # /bin/sh resolves through the /bin symlink
        if any(v[2] != "root" or v[3] != "root" for v in table.values()) and name != "base-passwd":
            extra_requires_pre.append("base-passwd")  # owners are looked up in the target's /etc/passwd
        trigger = ""
        if name == "libc-bin":
            trigger = f"%transfiletriggerin -- {' '.join(LIB_DIRS)}\n/usr/sbin/ldconfig\n"
            findings.append(Finding(name, "translated", "ldconfig as a transaction file trigger on "
                                                        f"{', '.join(LIB_DIRS)} (Debian's ldconfig trigger)"))
        spec = top / f"{name}.spec"
        spec.write_text(spec_text(control, evr, arch, tags, scripts, root, table, conffiles, extra_provides,
                                  extra_requires_pre, trigger))
        rpm = rpmbuild(spec, top, deb)
        rel = Path("RPMS") / arch / rpm.name
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(rpm, out / rel)
        evr_text = f"{evr.epoch}:{evr.version}-{evr.release}"
        result = Converted(name, evr_text, arch, rel.as_posix(), table, tags.replaces, findings)
    except ToolError as err:
        raise BuildError(f"{deb}: {err}") from err
    shutil.rmtree(top, ignore_errors=True)
    return result


def rpmbuild(spec: Path, top: Path, deb: Path) -> Path:
    argv = ["rpmbuild", "-bb", "--nodeps", "--quiet",
            "--define", f"_topdir {top / 'rpmbuild'}", "--define", f"_rpmdir {top / 'RPMS'}",
            "--define", "_dbpath /var/lib/rpm",
            "--define", "use_source_date_epoch_as_buildtime 1",
            "--define", "_buildhost ais-real-site", str(spec)]
    try:
        run(argv, env=BUILD_ENV, timeout=RPMBUILD_TIMEOUT)
    except ToolError as err:
        raise BuildError(f"{deb}: rpmbuild failed: {err}") from err
    rpms = sorted((top / "RPMS").glob("*/*.rpm"))
    if len(rpms) != 1:
        raise BuildError(f"{deb}: rpmbuild made {len(rpms)} RPMs, expected one")
    return rpms[0]
