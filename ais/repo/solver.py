"""Dependency resolution by libsolv (the solver of dnf and zypper) over repodata.

Reads: a repository directory's createrepo_c metadata, once: `repodata/repomd.xml`
names the primary and filelists files, which libsolv loads into a Pool (names,
versions, Provides, Requires including rich dependencies, Conflicts, Obsoletes,
file lists, sizes, checksums). No RPM payload is read and no digest computed:
the package's sha256 is the checksum createrepo_c recorded.

Resolves: a list of `Request`s (a name, optionally pinned to a version and/or
release) into one installable set: libsolv's answer, with ranged provides,
rich dependencies (and/or/if/unless/with/without), conflicts and obsoletes
honoured, backtracking over alternatives, newest version preferred. Weak
dependencies (Recommends, Supplements) are ignored, as `rpm -i` ignores them.

Fails: `BadInput` when the directory, its repodata or a metadata file is
missing or unreadable. An unsatisfiable request is not an exception: every
problem libsolv finds comes back as an `Unresolved` (what is wrong, what to do,
and the requests it involves), all at once.

Returns: `Package` records (`ais.model`) for the resolved set, sorted.
`Package.scriptlets` is not in repodata;
it is 0 here and counted from the RPM headers of the packages a configuration
uses (`ais.repo.headers.count_scriptlets`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import solv
from lxml import etree

from ais.errors import BadInput
from ais.files import file_sha256
from ais.model import Package

REPOMD_NS = "{http://linux.duke.edu/metadata/repo}"
_JOB = solv.Job
_SOLVER = solv.Solver


@dataclass(frozen=True)
class Request:
    """One package an SCD asks for; origin is the caller's (where it was written)."""

    name: str
    version: str | None = None
    release: str | None = None
    origin: object = None

    @property
    def pin(self) -> str:
        return f"{self.version or '*'}-{self.release or '*'}"


@dataclass(frozen=True)
class Unresolved:
    """One problem libsolv found: message (with what to do) and the requests involved."""

    message: str
    requests: tuple[Request, ...] = field(default=())


@dataclass
class Resolution:
    """The installable set (empty when there are problems) and every problem."""

    packages: list[Package]
    problems: list[Unresolved]


def evr_parts(evr: str) -> tuple[int, str, str]:
    """'1:2.3-4' -> (1, '2.3', '4'); missing epoch is 0.

    >>> evr_parts("3.0.1-2"), evr_parts("1:2.3-4")
    ((0, '3.0.1', '2'), (1, '2.3', '4'))
    """
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.rpartition("-")
    return int(epoch or 0), version, release


def repodata_files(repo_dir: Path) -> dict[str, Path]:
    """{'primary': path, 'filelists': path, ...} from repodata/repomd.xml."""
    repomd = repo_dir / "repodata" / "repomd.xml"
    try:
        data = repomd.read_bytes()
    except OSError as err:
        raise BadInput(f"{repomd}: cannot read the repository metadata ({err.strerror}); "
                       "run createrepo_c on the repository (make packages)") from err
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise BadInput(f"{repomd}: malformed repomd.xml ({err.msg}); run createrepo_c again") from err
    found = {}
    for entry in root.iter(f"{REPOMD_NS}data"):
        location = entry.find(f"{REPOMD_NS}location")
        if location is not None and location.get("href"):
            found[entry.get("type")] = repo_dir / location.get("href")
    for kind in ("primary", "filelists"):
        if kind not in found or not found[kind].is_file():
            raise BadInput(f"{repomd}: no {kind} metadata file; run createrepo_c again")
    return found


def _add_rpmmd(repo, path: Path, flags: int) -> None:
    handle = solv.xfopen(str(path))
    if handle is None:
        raise BadInput(f"{path}: cannot open repository metadata")
    try:
        if not repo.add_rpmmd(handle, None, flags):
            raise BadInput(f"{path}: unreadable repository metadata ({repo.pool.errstr}); run createrepo_c again")
    finally:
        handle.close()


class RepoPool:
    """Every package of one repository, in a libsolv Pool, as Package records."""

    def __init__(self, repo_dir: str | os.PathLike):
        self.root = Path(repo_dir)
        if not self.root.is_dir():
            raise BadInput(f"{self.root}: repository directory not found (run `make packages`)")
        files = repodata_files(self.root)
        self.pool = solv.Pool()
        self.pool.setarch()
        self.repo = self.pool.add_repo(str(self.root))
        _add_rpmmd(self.repo, files["primary"], 0)
        _add_rpmmd(self.repo, files["filelists"], solv.Repo.REPO_EXTEND_SOLVABLES)
        self.pool.addfileprovides()
        self.pool.createwhatprovides()
        solvables = [s for s in self.repo.solvables if s.arch != "src"]
        if not solvables:
            raise BadInput(f"{self.root}: the repository metadata lists no packages (run `make packages`)")
        self._file_reqs = self._file_requirements()
        self._package = {s.id: self._record(s) for s in solvables}
        self.packages = tuple(sorted(self._package.values()))

    def _record(self, s) -> Package:
        epoch, version, release = evr_parts(s.evr)
        location = s.lookup_location()[0]
        files = s.Dataiterator(solv.SOLVABLE_FILELIST, None,
                               solv.Dataiterator.SEARCH_FILES | solv.Dataiterator.SEARCH_COMPLETE_FILELIST)
        return Package(
            name=s.name, epoch=epoch, version=version, release=release, arch=s.arch,
            filename=location,
            size=s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE),
            installed_size=s.lookup_num(solv.SOLVABLE_INSTALLSIZE),
            file_count=sum(1 for _ in files),
            scriptlets=0,
            digest=self._sha256(s, location),
            requires=self._deps(s, solv.SOLVABLE_REQUIRES),
            provides=self._deps(s, solv.SOLVABLE_PROVIDES) + self._file_provides(s),
        )

    def _sha256(self, s, location: str) -> str:
        checksum = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
        if checksum is not None and checksum.typestr() == "sha256":
            return checksum.hex()
        return file_sha256(self.root / location)  # createrepo_c run with another checksum type

    @staticmethod
    def _deps(s, key) -> tuple[str, ...]:
        """Dependencies as rpm writes them ('name >= evr', '(a or b)'), each once; marker 0: with
        the install-time ones (Requires(pre), (post), ...) libsolv keeps after its prereq marker."""
        return tuple(dict.fromkeys(str(d) for d in s.lookup_deparray(key, 0)
                                   if not str(d).startswith(("rpmlib(", "solvable:prereqmarker"))))

    def _file_provides(self, s) -> tuple[str, ...]:
        """Files of s that some package of the repository requires (rpm satisfies them from file lists).

        Carried as provides so that later phases (`ais.repo.closure`) need no file lists.
        """
        own = {str(d) for d in s.lookup_deparray(solv.SOLVABLE_PROVIDES)}
        return tuple(path for path, providers in self._file_reqs.items() if s.id in providers and path not in own)

    def _file_requirements(self) -> dict[str, set[int]]:
        """{required path: ids of the solvables shipping it}."""
        paths = {str(d) for s in self.repo.solvables for d in s.lookup_deparray(solv.SOLVABLE_REQUIRES, 0)
                 if str(d).startswith("/")}
        return {p: {s.id for s in self.pool.whatprovides(self.pool.Dep(p))} for p in sorted(paths)}

    def versions(self, name: str) -> list[Package]:
        """Packages called name, newest first."""
        found = [s for s in self.pool.whatprovides(self.pool.Dep(name)) if s.name == name and s.id in self._package]
        return [self._package[s.id] for s in sorted(found, key=_EvrKey, reverse=True)]

    def candidates(self, request: Request) -> list:
        """Solvables matching a request's name and optional version/release pin."""
        out = []
        for s in self.pool.whatprovides(self.pool.Dep(request.name)):
            if s.name != request.name or s.id not in self._package:
                continue
            pkg = self._package[s.id]
            if request.version not in (None, pkg.version) or request.release not in (None, pkg.release):
                continue
            out.append(s)
        return out

    def resolve(self, requests: list[Request]) -> Resolution:
        """libsolv's installable set for the requests, or every problem it finds.

        A request nothing matches is reported without solving (`missing_message`);
        the others are still solved, so every problem comes back at once.
        """
        problems, jobs, asked = [], [], []
        for request in requests:
            matching = self.candidates(request)
            if not matching:
                problems.append(Unresolved(self.missing_message(request), (request,)))
                continue
            ids = self.pool.towhatprovides([s.id for s in matching])
            jobs.append(self.pool.Job(_JOB.SOLVER_INSTALL | _JOB.SOLVER_SOLVABLE_ONE_OF, ids))
            asked.append(request)
        solver = self.pool.Solver()
        solver.set_flag(_SOLVER.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        found = solver.solve(jobs)
        problems += [self._unresolved(problem, asked) for problem in found]
        if problems:
            return Resolution([], problems)
        chosen = solver.transaction().newsolvables()
        return Resolution(sorted(self._package[s.id] for s in chosen), [])

    def missing_message(self, request: Request) -> str:
        have = self.versions(request.name)
        if not have:
            return f"package {request.name!r} is not in the repository; check the name or add its spec to packages/"
        listed = ", ".join(f"{p.version}-{p.release}" for p in have)
        return f"package {request.name!r} version {request.pin} is not in the repository (it has {listed})"

    def _unresolved(self, problem, asked: list[Request]) -> Unresolved:
        involved = []
        for solution in problem.solutions():
            for element in solution.elements(True):
                if element.type == _SOLVER.SOLVER_SOLUTION_JOB and 0 <= element.jobidx < len(asked):
                    involved.append(asked[element.jobidx])
        involved = list(dict.fromkeys(involved))
        return Unresolved(explain(problem.findproblemrule().info(), len(involved)), tuple(involved))


def nevra_of(s) -> str:
    """A solvable in AIS's name-epoch:version-release.arch form."""
    epoch, version, release = evr_parts(s.evr)
    return f"{s.name}-{epoch}:{version}-{release}.{s.arch}"


def explain(info, involved: int) -> str:
    """What a libsolv rule says, in AIS's words, with what the admin can do."""
    kind, s, other, dep = info.type, info.solvable, info.othersolvable, info.dep
    several = "remove one of these requests" if involved > 1 else "remove this request"
    if kind == _SOLVER.SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP:
        return (f"unsatisfied dependency: {nevra_of(s)} needs '{dep}', which no package in the repository "
                f"provides; {several} or add a package that provides it")
    if kind == _SOLVER.SOLVER_RULE_PKG_REQUIRES:
        return (f"unsatisfied dependency: {nevra_of(s)} needs '{dep}', but no package providing it can be "
                f"installed with the rest of this configuration; {several} or pin versions that fit together")
    if kind == _SOLVER.SOLVER_RULE_PKG_CONFLICTS:
        return (f"{nevra_of(s)} conflicts with '{dep}' provided by {nevra_of(other)}; they cannot be installed "
                f"together: {several}")
    if kind in (_SOLVER.SOLVER_RULE_PKG_OBSOLETES, _SOLVER.SOLVER_RULE_PKG_IMPLICIT_OBSOLETES,
                _SOLVER.SOLVER_RULE_PKG_INSTALLED_OBSOLETES):
        return (f"{nevra_of(s)} obsoletes '{dep}' provided by {nevra_of(other)}; they cannot be installed "
                f"together: {several}")
    if kind == _SOLVER.SOLVER_RULE_PKG_SAME_NAME:
        return (f"two versions of {s.name!r} in one configuration: {nevra_of(s)} and {nevra_of(other)}; "
                "pin one version")
    return f"{info.problemstr()}; {several}"


class _EvrKey:
    """Sort key comparing solvables by rpm's version order (libsolv's evrcmp)."""

    def __init__(self, s):
        self.s = s

    def __lt__(self, other: "_EvrKey") -> bool:
        return self.s.evrcmp(other.s) < 0
