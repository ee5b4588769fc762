"""Read SCD and HCD files and groups.xml: safe XML parsing and schema validation.

Reads: `scd/*.xml`, `hcd/*.xml` and the optional `groups.xml` under a
descriptors directory (no groups.xml: no declared groups). The parser
never resolves entities, never loads a DTD and never touches the network; any
DOCTYPE is refused outright (XXE, billion laughs). Fails by returning
`Problem`s (file, line, message) rather than raising, so the caller can report
every error at once. Returns plain records with source lines kept, for the
meaning checks in `checks.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lxml import etree

from ais.errors import Problem

MAX_DESCRIPTOR_BYTES = 1 << 20  # a descriptor is a page of XML, not a data file
_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class PackageRequest:
    name: str
    version: str | None
    release: str | None
    line: int


@dataclass(frozen=True)
class ScdRecord:
    name: str
    kind: str  # "base" or "system"
    base: str | None
    extends: str | None
    packages: tuple[PackageRequest, ...]
    file: str
    line: int
    on_change: str = "reinstall"  # the on-change attribute: "update" or "reinstall"


@dataclass(frozen=True)
class GroupRecord:
    """One <group name=...>description</group> of groups.xml."""

    name: str
    description: str
    file: str
    line: int


@dataclass(frozen=True)
class FileRecord:
    path: str
    mode: str
    owner: str
    group: str
    source: str | None  # relative to the descriptors directory
    text: str | None  # inline content
    line: int


@dataclass(frozen=True)
class HcdRecord:
    name: str
    scd: str
    reinstalls: float
    macs: tuple[tuple[str, int], ...]  # (mac as written, line)
    token: str | None
    files: tuple[FileRecord, ...]
    file: str
    line: int
    transport: str | None = None  # the transport attribute, or None: the server's default
    groups: tuple[tuple[str, int], ...] = ()  # (group name as written, line), in file order


@dataclass
class Parsed:
    scds: list[ScdRecord] = field(default_factory=list)
    hcds: list[HcdRecord] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unread_hcds: int = 0  # HCD files refused (unreadable, malformed, off-schema): their groups are unknown
    groups_file: str | None = None  # groups.xml as shown in problems, when there is one
    groups_refused: bool = False  # groups.xml exists but was refused: which groups it declares is unknown


def _schema(name: str) -> etree.RelaxNG:
    text = resources.files("ais.descriptors").joinpath(f"schemas/{name}.rng").read_bytes()
    return etree.RelaxNG(etree.fromstring(text, _parser()))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True)


def parse_tree(path: Path, shown: str, schema: etree.RelaxNG, problems: list[Problem]):
    """Parse and schema-check one file; return its root element, or None."""
    try:
        data = path.read_bytes()
    except OSError as err:
        problems.append(Problem(shown, None, f"cannot read: {err.strerror}"))
        return None
    if len(data) > MAX_DESCRIPTOR_BYTES:
        problems.append(Problem(shown, None, f"file is {len(data)} bytes; descriptors are limited to 1 MiB"))
        return None
    if _DOCTYPE.search(data):
        line = data[: _DOCTYPE.search(data).start()].count(b"\n") + 1
        problems.append(Problem(shown, line, "DOCTYPE/ENTITY declarations are not allowed in descriptors; remove them"))
        return None
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as err:
        problems.append(Problem(shown, err.lineno, f"malformed XML: {err.msg}"))
        return None
    if not schema.validate(root):
        for entry in schema.error_log:
            problems.append(Problem(shown, entry.line, f"does not match the {schema_name(root)} schema: {entry.message}"))
        return None
    return root


def schema_name(root) -> str:
    return {"scd": "SCD", "hcd": "HCD", "groups": "groups.xml"}.get(root.tag, root.tag)


def scd_record(root, shown: str) -> ScdRecord:
    packages = tuple(
        PackageRequest(el.get("name"), el.get("version"), el.get("release"), el.sourceline)
        for el in root.iter("package")
    )
    return ScdRecord(
        name=root.get("name"),
        kind=root.get("kind", "system"),
        base=root.get("base"),
        extends=root.get("extends"),
        packages=packages,
        file=shown,
        line=root.sourceline,
        on_change=root.get("on-change", "reinstall"),
    )


def hcd_record(root, shown: str) -> HcdRecord:
    token = root.find("token")
    return HcdRecord(
        name=root.get("name"),
        scd=root.get("scd"),
        reinstalls=float(root.get("reinstalls", "1")),
        macs=tuple((el.text or "", el.sourceline) for el in root.iter("mac")),
        token=token.text.strip() if token is not None else None,
        files=tuple(_file_record(el) for el in root.iter("file")),
        file=shown,
        line=root.sourceline,
        transport=root.get("transport"),
        groups=tuple(((el.text or "").strip(), el.sourceline) for el in root.iter("group")),
    )


def group_records(root, shown: str) -> list[GroupRecord]:
    """The declared groups of a groups.xml root, in file order."""
    return [GroupRecord(el.get("name"), " ".join("".join(el.itertext()).split()), shown, el.sourceline)
            for el in root.iter("group")]


def _file_record(el) -> FileRecord:
    return FileRecord(
        path=el.get("path"),
        mode=el.get("mode", "0644"),
        owner=el.get("owner", "root"),
        group=el.get("group", "root"),
        source=el.get("source"),
        text=None if el.get("source") is not None else (el.text or ""),
        line=el.sourceline,
    )


def parse_descriptors(directory: Path) -> Parsed:
    """Parse every SCD and HCD under directory; collect every problem."""
    parsed = Parsed()
    for sub, kind, make in (("scd", "scd", scd_record), ("hcd", "hcd", hcd_record)):
        schema = _schema(kind)
        for path in sorted((directory / sub).glob("*.xml")):
            shown = str(path)
            root = parse_tree(path, shown, schema, parsed.problems)
            if root is not None:
                (parsed.scds if kind == "scd" else parsed.hcds).append(make(root, shown))
            elif kind == "hcd":
                parsed.unread_hcds += 1
    groups = directory / "groups.xml"
    if groups.exists() or groups.is_symlink():
        parsed.groups_file = str(groups)
        root = parse_tree(groups, str(groups), _schema("groups"), parsed.problems)
        if root is not None:
            parsed.groups = group_records(root, str(groups))
        else:
            parsed.groups_refused = True
    if not (directory / "scd").is_dir():
        parsed.problems.append(Problem(str(directory), None, "no scd/ directory: is this a descriptors repository?"))
    return parsed
