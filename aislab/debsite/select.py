"""Which Debian packages make the real site: the base and the roles, at two patch levels.

Reads: an `Index` (index.py). The base is every package of Priority required or
important plus a kernel (linux-image-amd64); each role is a few root packages in the
spirit of Debian's tasks (ROLES). A role's set is the closure of base + role roots over
Depends and Pre-Depends, choosing among alternatives as apt does: an alternative
already chosen wins, else the first real package whose version satisfies the relation,
else a provider of the first virtual name (one already chosen, else by priority, then name).
Patch level 1 is bookworm as released; level 2 is what apt installs with
bookworm-updates and bookworm-security (the newest version of each).
Fails: `SelectError` (a BadInput) naming the package and the relation no package satisfies.
Returns: `Selection`: per (configuration, level) the chosen names, and the (name, version)
pairs to fetch and convert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ais.errors import BadInput
from aislab.debsite.index import Index, compare_versions
from aislab.debsite.translate import parse_atom, split_groups

KERNEL = "linux-image-amd64"
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ssh": ("SSH server (OpenSSH)", ("openssh-server",)),
    "web": ("Web server (Apache httpd)", ("apache2",)),
    "db": ("Database server (PostgreSQL 15)", ("postgresql",)),
    "mail": ("Mail server (Postfix MTA, Dovecot IMAP)", ("postfix", "dovecot-imapd")),
    "hpc": ("HPC compute node (Open MPI, GCC C/C++/Fortran, make)",
            ("openmpi-bin", "libopenmpi-dev", "gcc", "g++", "gfortran", "make")),
    "desktop": ("Small desktop (X.Org server, Openbox, xterm)", ("xserver-xorg-core", "xinit", "openbox", "xterm")),
}
# The site's /usr is merged by base-files (convert.py), which is what usr-is-merged asserts;
# the usrmerge package would merge a tree at install time.
PREFERRED = frozenset({"usr-is-merged"})
PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
LEVELS = (1, 2)


class SelectError(BadInput):
    """A dependency of a selected package that nothing in bookworm satisfies."""


def base_roots(index: Index) -> list[str]:
    names = sorted(n for n, e in index.release.items() if e.get("Priority") in ("required", "important"))
    return [*names, KERNEL]


def satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    """Does a Debian version meet an (RPM-spelled) relation? Compared as Debian does."""
    if op is None:
        return True
    c = compare_versions(version, wanted.replace("_", "-") if wanted else "")
    return {"<": c < 0, "<=": c <= 0, "=": c == 0, ">=": c >= 0, ">": c > 0}[op]


@dataclass
class Resolver:
    """Closes a set of names over Depends and Pre-Depends at one patch level."""

    index: Index
    level: int
    providers: dict[str, list[str]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.known = self.index.names(self.level)
        for name in sorted(self.known):
            for group in split_groups(self.index.stanza(name, self.level).get("Provides", "")):
                atom = parse_atom(group)
                if isinstance(atom, tuple):
                    self.providers.setdefault(atom[0], []).append(name)

    def version(self, name: str) -> str:
        return self.index.stanza(name, self.level)["Version"]

    def provider_rank(self, name: str) -> tuple[int, str]:
        return PRIORITY_RANK.get(self.index.stanza(name, self.level).get("Priority", "optional"), 5), name

    def choose(self, group: str, chosen: set[str]) -> str | None:
        """The package apt would use for one group of alternatives (None: already satisfied)."""
        atoms = [a for a in (parse_atom(alt) for alt in group.split("|")) if isinstance(a, tuple)]
        names = self.known
        for name, op, ver in atoms:
            if name in chosen and satisfies(self.version(name), op, ver):
                return None
            if op is None and any(p in chosen for p in self.providers.get(name, ())):
                return None
        atoms.sort(key=lambda a: a[0] not in PREFERRED)
        for name, op, ver in atoms:
            if name in names and satisfies(self.version(name), op, ver):
                return name
        for name, op, _ in atoms:
            if op is None and self.providers.get(name):
                return min(self.providers[name], key=self.provider_rank)
        return ""

    def close(self, roots: list[str]) -> set[str]:
        missing = [r for r in roots if r not in self.known]
        if missing:
            raise SelectError(f"not in bookworm: {', '.join(missing)}")
        chosen, todo = set(roots), list(roots)
        while todo:
            name = todo.pop(0)
            stanza = self.index.stanza(name, self.level)
            for fname in ("Pre-Depends", "Depends"):
                for group in split_groups(stanza.get(fname, "")):
                    pick = self.choose(group, chosen)
                    if pick == "":
                        raise SelectError(f"{name} {stanza['Version']}: {fname} '{group}': no package in bookworm "
                                          f"satisfies it")
                    if pick:
                        chosen.add(pick)
                        todo.append(pick)
        return chosen


@dataclass
class Selection:
    """The names of each configuration at each level, and the debs they need."""

    roots: dict[str, list[str]]  # configuration -> its root names ('base' and the roles)
    names: dict[tuple[str, int], set[str]]  # (configuration, level) -> names (roles include the base)
    versions: dict[tuple[str, int], str]  # (name, level) -> Debian version

    def debs(self) -> set[tuple[str, str]]:
        out = set()
        for (conf, level), names in self.names.items():
            for name in names:
                out.add((name, self.versions[(name, level)]))
        return out


def select(index: Index, roles: list[str] | None = None) -> Selection:
    """Close the base and each role (default: all of ROLES) at both patch levels."""
    roles = list(ROLES) if roles is None else roles
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise SelectError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")
    base = base_roots(index)
    roots = {"base": base, **{r: list(ROLES[r][1]) for r in roles}}
    names, versions = {}, {}
    for level in LEVELS:
        resolver = Resolver(index, level)
        names[("base", level)] = resolver.close(base)
        for role in roles:
            names[(role, level)] = resolver.close([*base, *ROLES[role][1]])
        for conf_names in [v for (c, lv), v in names.items() if lv == level]:
            for name in conf_names:
                versions[(name, level)] = resolver.version(name)
    return Selection(roots, names, versions)
