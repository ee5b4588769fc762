"""Debian control data and maintainer scripts -> RPM tags and scriptlets (pure functions, no I/O).

Reads: Debian version strings, relation fields (Depends, Pre-Depends, Provides, Conflicts,
Breaks, Replaces) and the text of maintainer scripts, as plain strings.
Returns: `Evr` (epoch, version, release), `Tags` (Requires, Requires(pre), Provides,
Conflicts, Obsoletes, and what could not be translated, each with the reason) and
`Scripts` (the RPM scriptlets that do the real work Debian's scripts and triggers did,
the packages those scriptlets need, and every Debian script dropped with why).
Fails: never raises for bad control data; an atom it cannot translate is an `Untranslatable`
entry (the package, the field, the text and the reason), so the builder reports it.

Rules: a Debian version `E:U-R` is Epoch E, Version U, Release R, split at the LAST '-'
(a native version has no '-': Release "0", which is also how Debian compares a version without
revision, so a relation `>> 2.36` is `> 2.36-0`, true of 2.36-9 as in Debian); '-' or ':' left in U become '_' (RPM forbids
them) and the rewrite is reported. Relations: `<<` -> `<`, `>>` -> `>`, `<=`, `=`, `>=`
as is (the obsolete `<` and `>` mean `<=` and `>=`); `a | b` -> `(a or b)`; arch qualifiers
`:any`, `:native` and `:amd64` are dropped (the site is amd64 only), another arch is
untranslatable; `[arch]` restrictions keep the atom only when amd64 is allowed.
Conflicts and Breaks -> Conflicts; Replaces -> Obsoletes only for a name the package also
Conflicts with or Breaks (Debian's package replacement); a bare Replaces (file takeover)
is returned in `Tags.replaces` for the file-conflict check.
Every maintainer script is dropped (they talk to dpkg, debconf and running services);
what they did that an installed system needs is regenerated: system users and groups
(`adduser --system`, `addgroup --system`, `useradd -r`, `groupadd -r`) in %pre,
alternatives (`update-alternatives --install`, with slaves; paths usr-merged) as symlinks in a
Lua %post (no shell needed, whatever the install order), and
`depmod` for kernels; `ldconfig` is libc-bin's file trigger (see convert.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

ARCH = "amd64"
RPM_ARCH = {"amd64": "x86_64", "all": "noarch"}
OPS = {"<<": "<", ">>": ">", "<=": "<=", ">=": ">=", "=": "=", "<": "<=", ">": ">="}
ATOM = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.-]*)(?::(?P<arch>[a-z0-9-]+))?"
    r"(?:\s*\(\s*(?P<op><<|<=|=|>=|>>|<|>)\s*(?P<ver>[^()\s]+)\s*\))?"
    r"(?:\s*\[(?P<archs>[^\]]*)\])?(?:\s*<[^>]*>)*$"
)
MERGED = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")  # under /usr in bookworm's merged /usr
VERSION = re.compile(r"^(?:(?P<epoch>[0-9]+):)?(?P<rest>[0-9][A-Za-z0-9.+~:-]*)$")


def merged_path(path: str) -> str:
    """/bin/x -> /usr/bin/x, /lib64/x -> /usr/lib64/x; other paths unchanged."""
    parts = path.lstrip("/").split("/", 1)
    if parts[0] in MERGED:
        return "/usr/" + "/".join(parts)
    return path


@dataclass(frozen=True)
class Evr:
    """An RPM epoch, version and release made from one Debian version."""

    epoch: int
    version: str
    release: str
    rewritten: bool = False  # a '-' or ':' inside the upstream version became '_'

    def __str__(self) -> str:
        evr = f"{self.version}-{self.release}"
        return f"{self.epoch}:{evr}" if self.epoch else evr


@dataclass(frozen=True)
class Untranslatable:
    """One piece of control data that has no RPM form, and why."""

    field: str
    text: str
    reason: str


class BadVersion(ValueError):
    """A string that is not a Debian version."""


def split_version(debian: str, *, native_release: str = "0") -> Evr:
    """'2:1.2-3-1~deb12u1' -> Evr(2, '1.2_3', '1~deb12u1', rewritten=True)."""
    m = VERSION.match(debian.strip())
    if not m:
        raise BadVersion(f"{debian!r} is not a Debian version")
    rest = m["rest"]
    if ":" in rest and not m["epoch"]:
        raise BadVersion(f"{debian!r} is not a Debian version (':' without an epoch)")
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, native_release
    if not upstream or not revision:
        raise BadVersion(f"{debian!r} is not a Debian version")
    clean = upstream.replace("-", "_").replace(":", "_")
    return Evr(int(m["epoch"] or 0), clean, revision, rewritten=clean != upstream)


def dep_version(debian: str) -> str:
    """A version in a relation. Debian Policy: no revision is the revision "0", and so it is here."""
    return str(split_version(debian))


def parse_atom(text: str) -> tuple[str, str | None, str | None] | None | Untranslatable:
    """One Debian atom -> (name, rpm_op, rpm_version); None when its arch list excludes amd64."""
    m = ATOM.match(text.strip())
    if not m:
        return Untranslatable("", text.strip(), "not a Debian relation (name [(op version)] [arch])")
    if m["arch"] and m["arch"] not in ("any", "native", ARCH):
        return Untranslatable("", text.strip(), f"arch qualifier :{m['arch']} (the site is {ARCH} only)")
    if m["archs"] is not None and not arch_allowed(m["archs"].split()):
        return None
    if not m["op"]:
        return m["name"], None, None
    try:
        return m["name"], OPS[m["op"]], dep_version(m["ver"])
    except BadVersion as err:
        return Untranslatable("", text.strip(), str(err))


def arch_allowed(archs: list[str]) -> bool:
    """Debian's [arch ...] list: positive names allow, !names exclude."""
    negated = [a[1:] for a in archs if a.startswith("!")]
    if negated:
        return ARCH not in negated
    return ARCH in archs or "any" in archs


def rpm_atom(name: str, op: str | None, version: str | None) -> str:
    return f"{name} {op} {version}" if op else name


def debian_satisfies(version: str, op: str, wanted: str) -> bool:
    """Does a Debian version meet a Debian relation, as dpkg compares?"""
    from aislab.debsite.index import compare_versions

    c = compare_versions(version, wanted)
    return {"<<": c < 0, "<=": c <= 0, "<": c <= 0, "=": c == 0, ">=": c >= 0, ">>": c > 0, ">": c >= 0}[op]


def settle_rewritten(field_name: str, text: str, atom, site_versions, conflict: bool, notes: list[str]):
    """A relation whose version RPM must rewrite ('-' in the upstream part) orders differently in
    RPM: judged as Debian does against the site's versions of that name, it keeps no version
    when every one meets it, and a Conflicts that none meets is left out; both are said."""
    m = ATOM.match(text.strip())
    if not (m and m["ver"] and site_versions and m["name"] in site_versions):
        return atom
    try:
        if not split_version(m["ver"]).rewritten:
            return atom
    except BadVersion:
        return atom
    met = [debian_satisfies(v, m["op"], m["ver"]) for v in site_versions[m["name"]]]
    if all(met):
        notes.append(f"{field_name} '{text.strip()}' kept as '{m['name']}': every version of it in the site meets "
                     "it as Debian compares, and its RPM spelling would order differently")
        return m["name"], None, None
    if conflict and not any(met):
        notes.append(f"{field_name} '{text.strip()}' left out: no version of {m['name']} in the site meets it as "
                     "Debian compares, and its RPM spelling would order differently")
        return None
    return atom


def translate_relations(field_name: str, value: str, *, alternatives: bool = True,
                        site_versions: dict[str, list[str]] | None = None, conflict: bool = False,
                        notes: list[str] | None = None
                        ) -> tuple[list[str], list[tuple[str, str | None, str | None]], list[Untranslatable]]:
    """A relation field -> (RPM dependency strings, the parsed single atoms, what was lost).

    A group whose every alternative is untranslatable is lost (reported); an untranslatable
    alternative inside a group that still has others is reported and left out. With
    site_versions (name -> Debian versions in the site), relations on rewritten versions
    are settled as Debian would (settle_rewritten), each said in notes.
    """
    deps, atoms, lost = [], [], []
    notes = notes if notes is not None else []
    for group in split_groups(value):
        alts = group.split("|")
        if len(alts) > 1 and not alternatives:
            lost.append(Untranslatable(field_name, group.strip(), f"alternatives are not allowed in {field_name}"))
            continue
        parsed = []
        for alt in alts:
            atom = parse_atom(alt)
            if isinstance(atom, Untranslatable):
                lost.append(Untranslatable(field_name, atom.text, atom.reason))
            elif atom is not None:
                atom = settle_rewritten(field_name, alt, atom, site_versions, conflict, notes)
                if atom is not None:
                    parsed.append(atom)
        if not parsed:
            continue
        if len(parsed) == 1:
            deps.append(rpm_atom(*parsed[0]))
            atoms.append(parsed[0])
        else:
            deps.append("(" + " or ".join(rpm_atom(*a) for a in parsed) + ")")
    return deps, atoms, lost


def split_groups(value: str) -> list[str]:
    return [g.strip() for g in (value or "").replace("\n", " ").split(",") if g.strip()]


@dataclass
class Tags:
    """The dependency tags of one RPM, and what could not be carried over."""

    requires: list[str] = field(default_factory=list)
    requires_pre: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    obsoletes: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)  # names whose files this package may take over
    lost: list[Untranslatable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # relations left out on purpose, and why


def translate_control(control: dict[str, str], real_names: frozenset[str] | None = None,
                      site_versions: dict[str, list[str]] | None = None) -> Tags:
    """Depends, Pre-Depends, Provides, Conflicts, Breaks, Replaces of one package -> Tags.

    real_names: every real package name of the distribution, when known. A versioned
    Conflicts or Breaks on a name no real package has can never match in Debian (an
    unversioned Provides satisfies no versioned relation), but would match every
    provider in RPM: it is left out, and said so in `notes`.
    """
    tags = Tags()
    own = control.get("Package", "")
    site = {"site_versions": site_versions, "notes": tags.notes}
    tags.requires, _, lost = translate_relations("Depends", control.get("Depends", ""), **site)
    tags.lost += lost
    tags.requires_pre, _, lost = translate_relations("Pre-Depends", control.get("Pre-Depends", ""), **site)
    tags.lost += lost
    provides, atoms, lost = translate_relations("Provides", control.get("Provides", ""), alternatives=False)
    tags.lost += lost
    for (name, op, ver), text in zip(atoms, provides):
        if op not in (None, "="):
            tags.lost.append(Untranslatable("Provides", text, "a Provides may only carry '='"))
        else:
            tags.provides.append(text)
    against: set[str] = set()
    for fname in ("Conflicts", "Breaks"):
        deps, atoms, lost = translate_relations(fname, control.get(fname, ""), alternatives=False, conflict=True,
                                                **site)
        tags.lost += lost
        for dep, (name, op, _) in zip(deps, atoms):
            against.add(name)
            if op and real_names is not None and name not in real_names:
                tags.notes.append(f"{fname} '{dep}' left out: no package in bookworm is called {name}, and "
                                  "Debian never matches a versioned relation with an unversioned Provides")
                continue
            if dep not in tags.conflicts:
                tags.conflicts.append(dep)
    deps, atoms, lost = translate_relations("Replaces", control.get("Replaces", ""), alternatives=False)
    tags.lost += lost
    for dep, (name, _, _) in zip(deps, atoms):
        if name == own:
            continue
        if name in against:
            tags.obsoletes.append(dep)
        else:
            tags.replaces.append(name)
    return tags


# --- maintainer scripts ----------------------------------------------------------------

SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config", "triggers")
DPKG_ONLY = (  # what makes a script meaningful only under dpkg, as the report names it
    ("dpkg-maintscript-helper", "dpkg conffile moves (dpkg-maintscript-helper)"),
    ("deb-systemd-helper", "systemd unit state kept by dpkg (deb-systemd-helper)"),
    ("deb-systemd-invoke", "starts or stops services (deb-systemd-invoke); nothing runs in an image"),
    ("invoke-rc.d", "starts or stops services (invoke-rc.d); nothing runs in an image"),
    ("update-rc.d", "SysV init links (update-rc.d)"),
    ("systemctl", "talks to a running systemd (systemctl)"),
    ("db_", "debconf questions (debconf)"),
    ("ucf", "conffile merging (ucf)"),
    ("dpkg-trigger", "dpkg triggers"),
    ("dpkg --compare-versions", "upgrade paths between Debian versions"),
    ("dpkg-divert", "dpkg diversions"),
    ("dpkg-statoverride", "dpkg stat overrides"),
    ("py3compile", "byte-compiles Python modules (py3compile)"),
    ("py3clean", "removes byte-compiled Python (py3clean)"),
    ("update-initramfs", "builds an initramfs (update-initramfs); the client boots its own"),
    ("linux-update-symlinks", "/vmlinuz symlinks (linux-update-symlinks)"),
    ("run-parts", "runs hook directories (run-parts)"),
    ("activate", "dpkg trigger declarations"),
    ("interest", "dpkg trigger declarations"),
)
TRANSLATED_TOOLS = ("update-alternatives", "adduser", "addgroup", "useradd", "groupadd", "ldconfig", "depmod")


@dataclass(frozen=True)
class User:
    name: str
    group: str
    home: str
    shell: str
    create_home: bool


@dataclass(frozen=True)
class Alternative:
    name: str
    link: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...] = ()  # (link, name, path)


@dataclass
class Scripts:
    """RPM scriptlets made for one package, what they need, and what was dropped."""

    sections: dict[str, str] = field(default_factory=dict)  # '%pre' -> body
    needs: dict[str, list[str]] = field(default_factory=dict)  # 'pre' -> packages its scriptlet uses
    users: list[User] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (script, why)
    lost: list[Untranslatable] = field(default_factory=list)  # translatable tools with unreadable arguments


def logical_lines(text: str) -> list[str]:
    """Shell lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [ln.split(" #")[0].strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def commands_in(line: str) -> list[list[str]]:
    """The simple commands of one line (split at ; && || | then/do/else), as argv lists."""
    out = []
    for part in re.split(r"\s*(?:;|&&|\|\||\|)\s*", line):
        try:
            argv = shlex.split(part, comments=True)
        except ValueError:
            continue
        while argv and argv[0] in ("then", "do", "else", "if", "!", "elif", "exec"):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def parse_adduser(argv: list[str]) -> User | str | None:
    """adduser/useradd for a system user -> User; a group-only call -> the group name; else None."""
    tool, args = argv[0], argv[1:]
    opts: dict[str, str | bool] = {}
    names = []
    takes_value = {"--home", "--shell", "--ingroup", "--gecos", "--uid", "--gid", "--firstuid", "--lastuid",
                   "--comment", "-d", "-s", "-g", "-u", "-c", "-G", "-K", "--groups", "--add_extra_groups"}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            opts[k] = v
        elif a in takes_value and i + 1 < len(args):
            opts[a] = args[i + 1]
            i += 1
        elif a.startswith("-"):
            opts[a] = True
        elif re.fullmatch(r"\$\{?[A-Za-z_]+\}?", a):
            pass  # an unquoted variable where a flag goes ($quiet): expands to flags or nothing
        else:
            names.append(a)
        i += 1
    system = opts.get("--system") or opts.get("-r") or opts.get("--system-group")
    if not system or not names or any("$" in n or "`" in n for n in names):
        return None
    if tool in ("addgroup", "groupadd"):
        return names[0]
    name = names[0]
    if tool == "adduser" and len(names) == 2:  # adduser USER GROUP: add to a group, not a system user
        return None
    group = str(opts.get("--ingroup") or opts.get("-g") or (name if opts.get("--group") else "nogroup"))
    home = str(opts.get("--home") or opts.get("-d") or "/nonexistent")
    shell = str(opts.get("--shell") or opts.get("-s") or "/usr/sbin/nologin")
    if tool == "useradd":  # useradd makes a home only when asked; adduser unless told not to
        create = bool(opts.get("-m") or opts.get("--create-home"))
    else:
        create = not opts.get("--no-create-home")
    create = create and home not in ("/nonexistent", "/")
    if any("$" in v for v in (group, home, shell)):
        return None
    return User(name, group, home, shell, create)


def parse_alternative(argv: list[str]) -> Alternative | None:
    """update-alternatives --install LINK NAME PATH PRIO [--slave LINK NAME PATH]..."""
    if "--install" not in argv:
        return None
    i = argv.index("--install")
    try:
        link, name, path, prio = argv[i + 1:i + 5]
        priority = int(prio)
    except ValueError:
        return None
    slaves = []
    j = i + 5
    while j < len(argv):
        if argv[j] == "--slave" and j + 3 < len(argv):
            slaves.append((argv[j + 1], argv[j + 2], argv[j + 3]))
            j += 4
        else:
            j += 1
    every = [link, name, path, *(x for s in slaves for x in s)]
    if any("$" in x or "`" in x for x in every):
        return None
    slaves = [(merged_path(sl), sn, merged_path(sp)) for sl, sn, sp in slaves]
    return Alternative(name, merged_path(link), merged_path(path), priority, tuple(slaves))


def analyse_scripts(package: str, scripts: dict[str, str], *, kernel_version: str | None = None) -> Scripts:
    """Drop every Debian maintainer script; regenerate users, groups, alternatives and depmod."""
    out = Scripts()
    for script in SCRIPTS:
        text = scripts.get(script)
        if text is None:
            continue
        reasons, translated = [], []
        for line in logical_lines(text):
            for argv in commands_in(line):
                tool = argv[0].rsplit("/", 1)[-1]
                if tool in ("adduser", "useradd", "addgroup", "groupadd"):
                    found = parse_adduser([tool, *argv[1:]])
                    if isinstance(found, User) and found not in out.users:
                        out.users.append(found)
                        translated.append(f"system user {found.name}")
                    elif isinstance(found, str) and found not in out.groups:
                        out.groups.append(found)
                        translated.append(f"system group {found}")
                    elif found is None and ("--system" in argv or "-r" in argv):
                        out.lost.append(Untranslatable(script, " ".join(argv), "a system user or group whose "
                                                                                 "arguments are not literal"))
                elif tool == "update-alternatives" and "--install" in argv:
                    alt = parse_alternative(argv)
                    if alt and alt not in out.alternatives:
                        out.alternatives.append(alt)
                        translated.append(f"alternative {alt.name}")
                    elif alt is None:
                        out.lost.append(Untranslatable(script, " ".join(argv), "an alternative whose arguments "
                                                                                 "are not literal"))
                elif tool == "ldconfig" or (script == "triggers" and "ldconfig" in argv):
                    translated.append("ldconfig (libc-bin's file trigger)")
                elif tool == "depmod":
                    translated.append("depmod")
            for needle, why in DPKG_ONLY:
                if needle in line and why not in reasons:
                    reasons.append(why)
        why = "; ".join(reasons) or "dpkg-time logic only"
        if translated:
            why = f"{why}; kept as RPM scriptlets: {', '.join(sorted(set(translated)))}"
        out.dropped.append((script, why))
    if kernel_version:
        out.sections["%posttrans"] = f"depmod -a {shlex.quote(kernel_version)}\n"
        out.needs["posttrans"] = ["kmod"]
    pre = user_scriptlet(out.users, out.groups)
    if pre:
        out.sections["%pre"] = pre
        out.needs["pre"] = ["passwd", "libc-bin", "base-passwd", "coreutils"]
    if out.alternatives:
        out.sections["%post -p <lua>"] = alternatives_post(out.alternatives)
        out.sections["%postun -p <lua>"] = alternatives_postun(out.alternatives)
    return out


def user_scriptlet(users: list[User], groups: list[str]) -> str:
    """%pre: create system groups and users that do not exist yet (getent, groupadd, useradd)."""
    lines = []
    wanted_groups = list(dict.fromkeys([*groups, *(u.group for u in users if u.group != "nogroup")]))
    for g in wanted_groups:
        q = shlex.quote(g)
        lines.append(f"getent group {q} >/dev/null || groupadd -r {q}")
    for u in users:
        q = shlex.quote(u.name)
        lines.append(f"getent passwd {q} >/dev/null || useradd -r -M -g {shlex.quote(u.group)} "
                     f"-d {shlex.quote(u.home)} -s {shlex.quote(u.shell)} {q}")
        if u.create_home:
            lines.append(f"[ -d {shlex.quote(u.home)} ] || install -d -o {q} -g {shlex.quote(u.group)} "
                         f"{shlex.quote(u.home)}")
    return "\n".join(lines) + "\n" if lines else ""


ALT_DIR = "/var/lib/rpm-alternatives"
LUA_HELPERS = """local function mkdirs(d)
  local p = ""
  for part in d:gmatch("[^/]+") do p = p .. "/" .. part; if not posix.access(p) then posix.mkdir(p) end end
end
local function record(f)
  local h = io.open(f)
  if not h then return nil end
  local line = h:read("*l"); h:close()
  return line
end
"""


def lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def alternatives_post(alts: list[Alternative]) -> str:
    """%post (Lua, so it needs no shell nor coreutils, whatever the install order): the highest
    priority wins /etc/alternatives/NAME; each LINK -> /etc/alternatives/NAME unless LINK exists."""
    lines = [LUA_HELPERS, f"mkdirs({lua_str(ALT_DIR)}); mkdirs('/etc/alternatives')"]
    for a in alts:
        group = [(a.link, a.name, a.path), *a.slaves]
        rec = lua_str(f"{ALT_DIR}/{a.name}")
        lines.append(f"do local cur = record({rec}); local prio = cur and tonumber(cur:match('^(-?%d+)'))")
        lines.append(f"  if not prio or {a.priority} > prio then")
        lines.append(f"    local h = io.open({rec}, 'w'); h:write({lua_str(f'{a.priority} {a.path}')} .. '\\n'); h:close()")
        for _, n, p in group:
            alt = lua_str("/etc/alternatives/" + n)
            lines.append(f"    os.remove({alt}); posix.symlink({lua_str(p)}, {alt})")
        lines.append("  end")
        for link, n, _ in group:
            ql = lua_str(link)
            lines.append(f"  if not posix.readlink({ql}) and not posix.access({ql}) then "
                         f"mkdirs({lua_str(link.rsplit('/', 1)[0] or '/')}); "
                         f"posix.symlink({lua_str('/etc/alternatives/' + n)}, {ql}) end")
        lines.append("end")
    return "\n".join(lines) + "\n"


def alternatives_postun(alts: list[Alternative]) -> str:
    """%postun (Lua) on erase: forget an alternative this package was the choice of."""
    lines = [LUA_HELPERS, "if arg[2] == 0 then"]
    for a in alts:
        rec = lua_str(f"{ALT_DIR}/{a.name}")
        lines.append(f"  local cur = record({rec})")
        lines.append(f"  if cur and cur:match('^%-?%d+ (.*)$') == {lua_str(a.path)} then os.remove({rec})")
        for n in [a.name, *(s[1] for s in a.slaves)]:
            lines.append(f"    os.remove({lua_str('/etc/alternatives/' + n)})")
        lines.append("  end")
    lines.append("end")
    return "\n".join(lines) + "\n"
