"""A repository of small real RPMs, built by rpmbuild, exercising the dependency kinds.

Each scenario uses its own package names, so one repository serves every test:
ranged provides, rich dependencies, conflicts, obsoletes and a choice that needs
backtracking. `site_for(tmp_path, repo, packages)` writes a base SCD and one
system SCD requesting `packages` (one per line, lines known) and loads them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def spec(name: str, version: str = "1.0", *deps: str) -> str:
    """A spec of one tiny package with the given dependency lines (no scriptlets)."""
    lines = "\n".join(deps)
    return f"""\
%define debug_package %{{nil}}
Name: {name}
Version: {version}
Release: 1
Summary: test package {name}
License: MIT
BuildArch: x86_64
AutoReqProv: no
{lines}
%description
Resolution test package.
%install
mkdir -p %{{buildroot}}/usr/share/{name} && echo {name} > %{{buildroot}}/usr/share/{name}/{version}
%files
/usr/share/{name}
"""


SPECS = {
    "root-t": spec("root-t"),
    # ranged provides: a Provides `foo < 1` must not satisfy `Requires: foo > 2`
    "oldfoo": spec("oldfoo", "9.0", "Provides: foo < 1"),
    "newfoo": spec("newfoo", "1.0", "Provides: foo = 3"),
    "wantsfoo": spec("wantsfoo", "1.0", "Requires: foo > 2"),
    "legacyold": spec("legacyold", "1.0", "Provides: legacy < 1"),
    "wantslegacy": spec("wantslegacy", "1.0", "Requires: legacy > 2"),
    # rich dependencies
    "aaa": spec("aaa"),
    "bbb": spec("bbb"),
    "richor": spec("richor", "1.0", "Requires: (aaa or bbb)"),
    "ccc": spec("ccc"),
    "ddd": spec("ddd"),
    "richif": spec("richif", "1.0", "Requires: (ccc if ddd)"),
    # conflicts and obsoletes
    "confa": spec("confa", "1.0", "Conflicts: confb"),
    "confb": spec("confb"),
    "oldname": spec("oldname"),
    "newname": spec("newname", "2.0", "Obsoletes: oldname < 2"),
    # backtracking: impl-new is the newest provider but conflicts with bar
    "app": spec("app", "1.0", "Requires: lib-impl", "Requires: bar"),
    "impl-new": spec("impl-new", "2.0", "Provides: lib-impl", "Conflicts: bar"),
    "impl-old": spec("impl-old", "1.0", "Provides: lib-impl"),
    "bar": spec("bar"),
    # a need nothing provides
    "broken-t": spec("broken-t", "1.0", "Requires: libimaginary >= 2"),
    # install-time needs (Requires(pre), Requires(post)): libsolv lists them after a marker
    "prereq-t": spec("prereq-t", "1.0", "Requires(pre): aaa", "Requires(post): bbb", "Requires: ccc"),
}


@pytest.fixture(scope="session")
def dep_repo(build_test_rpms) -> Path:
    return build_test_rpms(SPECS)


BASE = '<?xml version="1.0"?>\n<scd name="base" kind="base">\n  <package name="root-t"/>\n</scd>\n'


def write_site(directory: Path, packages: list[str]) -> Path:
    """Descriptors with scd/base.xml and scd/sys.xml; package i is on line 3 + i of sys.xml."""
    (directory / "scd").mkdir(parents=True)
    (directory / "hcd").mkdir()
    (directory / "scd" / "base.xml").write_text(BASE)
    body = "".join(f'  <package name="{p}"/>\n' for p in packages)
    (directory / "scd" / "sys.xml").write_text(f'<?xml version="1.0"?>\n<scd name="sys" base="base">\n{body}</scd>\n')
    return directory


def line_of(packages: list[str], name: str) -> int:
    return 3 + packages.index(name)
