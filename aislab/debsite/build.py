"""Build the real site: select, fetch, convert, check, createrepo_c, write the SCDs (incremental).

Reads: the apt lists (index.py), the .debs (fetched once into `--debs`, default build/debs).
Writes: `<out>/RPMS/<arch>/*.rpm` and `<out>/repodata/` (default build/real-repo), one stamp
per converted deb in `<out>/.stamps/` (its key and what it produced), `<out>/report.json`
and `<out>/report.txt` (every finding: untranslatable dependencies, dropped maintainer
scripts, name clashes, file conflicts, rewritten versions, dropped files), and, with
`--descriptors DIR`, the SCDs `DIR/scd/<conf>-<level>.xml` (base-1, base-2, ssh-1, ...).
Incremental: a deb is converted again only when its file, the converter's source
(translate.py, convert.py) or the paths excluded from it changed; RPMs no current deb
produced are removed; createrepo_c runs only when the set of RPMs changed.
Site checks: two debs giving one RPM file name (a name clash, e.g. versions differing only
in epoch) stop the build; two packages of one configuration that ship one path with
different contents, modes, owners or kinds are a file conflict: when one Replaces the
other, the replaced package's copy is left out (Debian's file takeover) and it is rebuilt;
otherwise it is reported as unresolved (rpm will refuse that configuration).
Fails: `BuildError` (a tool or a deb failed, a name clash), `WorldError` (apt lists or
network), `SelectError` (a dependency bookworm cannot satisfy).
Returns: `SiteResult` (RPM paths, findings, configurations and the seconds spent).
Progress (debs fetched, packages converted, k of n) and the step lines go to stderr through
ais.progress: bars on a terminal, timestamped lines otherwise.

Run as `python -m aislab.debsite [--roles ssh,web,...|--base-only] [--out build/real-repo]
[--debs build/debs] [--descriptors descriptors-real]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ais import progress
from ais.errors import BuildError
from ais.files import write_atomic
from ais.run import run
from aislab.debsite import convert as convert_mod
from aislab.debsite import translate as translate_mod
from aislab.debsite.convert import Converted, Finding, convert
from aislab.debsite.fetch import fetch
from aislab.debsite.index import SUITES, Index, find_list, load_index
from aislab.debsite.select import LEVELS, ROLES, Selection, select
from aislab.debsite.translate import split_version

STAMPS = ".stamps"
LEVEL_NAMES = {1: "bookworm as released", 2: "bookworm with bookworm-updates and bookworm-security, as apt installs it"}


def converter_digest() -> str:
    h = hashlib.sha256()
    for mod in (convert_mod, translate_mod):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


def cached_index(cache: Path) -> Index:
    """The parsed apt lists, cached as a pickle keyed by the lists' names, sizes and mtimes."""
    key = hashlib.sha256()
    for pattern in SUITES.values():
        path = Path(find_list(pattern))
        st = path.stat()
        key.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())
    stamp = key.hexdigest()
    if cache.is_file():
        try:
            saved_key, index = pickle.loads(cache.read_bytes())
            if saved_key == stamp:
                return index
        except (pickle.UnpicklingError, EOFError, ValueError, AttributeError):
            pass
    index = load_index()
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, pickle.dumps((stamp, index)))
    return index


@dataclass
class SiteResult:
    rpms: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    selection: Selection | None = None
    seconds: float = 0.0


def stamp_path(out: Path, deb: Path) -> Path:
    return out / STAMPS / (deb.name + ".json")


def build_key(deb: Path, exclude: set[str], digest: str) -> str:
    st = deb.stat()
    return hashlib.sha256(json.dumps([deb.name, st.st_size, sorted(exclude), digest]).encode()).hexdigest()


def load_stamp(out: Path, deb: Path, key: str) -> Converted | None:
    try:
        data = json.loads(stamp_path(out, deb).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if data.get("key") != key or not (out / data["converted"]["rpm"]).is_file():
        return None
    c = data["converted"]
    return Converted(c["name"], c["evr"], c["arch"], c["rpm"], c["files"], c["replaces"],
                     [Finding(**f) for f in c["findings"]])


def save_stamp(out: Path, deb: Path, key: str, conv: Converted) -> None:
    path = stamp_path(out, deb)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"key": key, "converted": asdict(conv)}).encode())


def convert_all(debs: dict[tuple[str, str], Path], out: Path, work: Path, exclude: dict[str, set[str]],
                jobs: int, echo, real_names: frozenset[str]) -> tuple[dict[tuple[str, str], Converted], list[str]]:
    site_versions: dict[str, list[str]] = defaultdict(list)
    for name, version in sorted(debs):
        site_versions[name].append(version)
    digest = converter_digest() + hashlib.sha256(json.dumps([sorted(real_names), site_versions]).encode()).hexdigest()
    done, todo, built = {}, [], []
    for key, deb in sorted(debs.items()):
        ex = exclude.get(key[0], set())
        bkey = build_key(deb, ex, digest)
        conv = load_stamp(out, deb, bkey)
        if conv:
            done[key] = conv
        else:
            todo.append((key, deb, ex, bkey))

    def one(item):
        key, deb, ex, bkey = item
        started = time.monotonic()
        conv = convert(deb, out, work, exclude=ex, real_names=real_names, site_versions=dict(site_versions))
        save_stamp(out, deb, bkey, conv)
        return key, conv, time.monotonic() - started

    if not todo:
        return done, built
    with ThreadPoolExecutor(max_workers=jobs) as pool, progress.task("convert .deb -> RPM", len(todo), "packages") as bar:
        for n, (key, conv, secs) in enumerate(pool.map(one, todo), 1):
            done[key] = conv
            built.append(conv.rpm)
            echo(f"[{n}/{len(todo)}] {secs:6.2f}s {conv.rpm}")
            bar.advance()
    return done, built


def name_clashes(convs: dict[tuple[str, str], Converted]) -> list[Finding]:
    """Two debs that give one RPM file, or one RPM name-epoch-version-release."""
    by_file: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, c in convs.items():
        by_file[c.rpm].append(key)
    return [Finding(keys[0][0], "name-clash", f"{', '.join(f'{n} {v}' for n, v in sorted(keys))} all become {rpm}")
            for rpm, keys in sorted(by_file.items()) if len(keys) > 1]


def file_conflicts(sel: Selection, convs: dict[tuple[str, str], Converted]
                   ) -> tuple[dict[str, set[str]], list[Finding]]:
    """Per configuration, paths two packages ship differently; the exclusions Replaces allows."""
    exclude: dict[str, set[str]] = defaultdict(set)
    findings: dict[tuple, Finding] = {}
    for (conf, level), names in sorted(sel.names.items()):
        owners: dict[str, list[Converted]] = defaultdict(list)
        for name in sorted(names):
            c = convs[(name, sel.versions[(name, level)])]
            for path in c.files:
                owners[path].append(c)
        for path, cs in owners.items():
            if len(cs) < 2:
                continue
            metas = {tuple(c.files[path]) for c in cs}
            kinds = {m[0] for m in metas}
            if len(metas) == 1 or kinds == {"d"}:
                continue
            for a in cs:
                for b in cs:
                    if a is b or tuple(a.files[path]) == tuple(b.files[path]):
                        continue
                    if b.name in a.replaces:
                        exclude[b.name].add(path)
            pkgs = " and ".join(sorted({f"{c.name} {c.evr}" for c in cs}))
            resolved = [c.name for c in cs if path in exclude.get(c.name, ())]
            detail = (f"{path}: shipped by {pkgs} with different contents, modes, owners or kinds; "
                      + (f"left out of {', '.join(resolved)} (Replaces)" if resolved
                         else f"unresolved: rpm refuses them together in {conf}-{level}"))
            findings.setdefault((path, pkgs), Finding(cs[0].name, "file-conflict", detail))
    return dict(exclude), list(findings.values())


def prune(out: Path, keep: set[str], stamps: set[str]) -> list[str]:
    removed = []
    for rpm in sorted((out / "RPMS").glob("*/*.rpm")):
        rel = rpm.relative_to(out).as_posix()
        if rel not in keep:
            rpm.unlink()
            removed.append(rel)
    for st in (out / STAMPS).glob("*.deb.json"):
        if st.name not in stamps:
            st.unlink()
    return removed


def update_repodata(out: Path, rpms: list[str]) -> bool:
    h = hashlib.sha256()
    for rel in sorted(rpms):
        st = (out / rel).stat()
        h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    key_file = out / STAMPS / "repodata.key"
    if (out / "repodata" / "repomd.xml").is_file() and key_file.is_file() \
            and key_file.read_text().strip() == h.hexdigest():
        return False
    run(["createrepo_c", "--quiet", "--workers", "2", str(out)], timeout=1800)
    key_file.write_text(h.hexdigest() + "\n")
    return True


def write_scds(dest: Path, sel: Selection, index: Index) -> list[Path]:
    """One SCD per configuration and patch level; pins for every package whose version differs by level."""
    (dest / "scd").mkdir(parents=True, exist_ok=True)
    written = []
    changed = {name for (name, level) in sel.versions if level == 2
               and sel.versions[(name, 2)] != sel.versions.get((name, 1))}
    for (conf, level), names in sorted(sel.names.items()):
        base_names = sel.names[("base", level)]
        own = names if conf == "base" else names - base_names
        pins = sorted(n for n in own & changed if n not in sel.roots[conf])
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 "<!-- Written by `make real-site` (python -m aislab.debsite) from this machine's apt lists; "
                 "do not edit. -->"]
        attrs = 'kind="base"' if conf == "base" else f'base="base-{level}"'
        lines.append(f'<scd name="{conf}-{level}" {attrs}>')
        what = "Installation base: Debian Priority required and important, and a kernel" if conf == "base" \
            else ROLES[conf][0]
        lines.append(f"  <description>{escape(what)}; {escape(LEVEL_NAMES[level])}.</description>")
        for name in [*sel.roots[conf], *pins]:
            lines.append("  " + package_element(name, sel.versions[(name, level)], pinned=name in changed))
        lines.append("</scd>")
        path = dest / "scd" / f"{conf}-{level}.xml"
        write_atomic(path, ("\n".join(lines) + "\n").encode())
        written.append(path)
    return written


def package_element(name: str, debver: str, *, pinned: bool) -> str:
    if not pinned:
        return f"<package name={quoteattr(name)}/>"
    evr = split_version(debver)
    return f"<package name={quoteattr(name)} version={quoteattr(evr.version)} release={quoteattr(evr.release)}/>"


def write_report(out: Path, findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        counts[f.kind] += 1
    write_atomic(out / "report.json", json.dumps([asdict(f) for f in findings], indent=1).encode())
    write_atomic(out / "report.txt", ("\n".join(str(f) for f in findings) + "\n").encode())
    return dict(counts)


def build_site(out: Path, debs_dir: Path, *, roles: list[str] | None = None, descriptors: Path | None = None,
               jobs: int | None = None, echo=progress.line) -> SiteResult:
    started = time.monotonic()
    out, debs_dir = out.resolve(), debs_dir.resolve()
    work = out.parent / (out.name + "-work")
    index = cached_index(out.parent / "debsite-index.pickle")
    sel = select(index, roles)
    wanted = {}
    for (name, level), version in sel.versions.items():
        wanted[(name, version)] = index.stanza(name, level)["Architecture"]
    echo(f"real site: {len(sel.roots) - 1} role(s) and the base at {len(LEVELS)} patch levels: {len(wanted)} debs")
    debs = fetch(wanted, debs_dir, echo=echo)
    jobs = jobs or os.cpu_count() or 1
    result = SiteResult(selection=sel)
    real_names = frozenset(index.names(2))
    convs, built = convert_all(debs, out, work, {}, jobs, echo, real_names)
    exclude, conflicts = file_conflicts(sel, convs)
    if exclude:
        ex_by_key = {key: exclude[key[0]] for key in debs if key[0] in exclude}
        echo(f"file conflicts resolved by Replaces: rebuilding {len(ex_by_key)} package(s)")
        convs, again = convert_all(debs, out, work, {k[0]: v for k, v in ex_by_key.items()}, jobs, echo,
                                    real_names)
        built += again
    clashes = name_clashes(convs)
    result.findings = [f for c in convs.values() for f in c.findings] + conflicts + clashes
    counts = write_report(out, result.findings)
    if clashes:
        raise BuildError("name clash: " + "; ".join(f.detail for f in clashes) + f" (see {out / 'report.txt'})")
    result.rpms = sorted({c.rpm for c in convs.values()})
    removed = prune(out, set(result.rpms), {deb.name + ".json" for deb in debs.values()})
    updated = update_repodata(out, result.rpms)
    result.built = built
    if descriptors:
        for path in write_scds(descriptors, sel, index):
            echo(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - started
    size = sum((out / r).stat().st_size for r in result.rpms)
    echo(f"findings: {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'} (all in {out / 'report.txt'})")
    for f in result.findings:
        if f.kind not in ("dropped-script", "translated", "dropped-relation"):  # counted above, all in report
            echo(f"  {f}")
    echo(f"repo {out}: {len(result.rpms)} RPMs, {size / 2**20:.0f} MiB; converted {len(built)}, removed {len(removed)}; "
         f"repodata {'updated' if updated else 'unchanged'}; {result.seconds:.1f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aislab.debsite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/real-repo", help="repository to write (default: build/real-repo)")
    parser.add_argument("--debs", default="build/debs", help="where .debs are cached (default: build/debs)")
    parser.add_argument("--roles", default=",".join(ROLES), help=f"comma-separated roles (default: {','.join(ROLES)})")
    parser.add_argument("--base-only", action="store_true", help="only the installation base")
    parser.add_argument("--descriptors", default=None, help="write the SCDs into DIR/scd")
    parser.add_argument("--jobs", type=int, default=None, help="parallel conversions (default: CPU count)")
    args = parser.parse_args(argv)
    from ais.cli import run_handler

    def handler(a: argparse.Namespace) -> int:
        roles = [] if a.base_only else [r for r in a.roles.split(",") if r]
        build_site(Path(a.out), Path(a.debs), roles=roles,
                   descriptors=Path(a.descriptors) if a.descriptors else None, jobs=a.jobs)
        return 0

    return run_handler(handler, args, prog="aislab.debsite")


if __name__ == "__main__":
    sys.exit(main())
