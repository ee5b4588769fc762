"""A repository (RPMs and createrepo_c metadata) with one extra package whose dependency nothing provides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.run import run


BROKEN_SPEC = """\
%define debug_package %{nil}
Name: broken
Version: 1.0
Release: 1
Summary: needs a library nobody ships
License: MIT
BuildArch: x86_64
AutoReqProv: no
Requires: libimaginary >= 2
%description
Test package with an unsatisfiable dependency.
%install
mkdir -p %{buildroot}/usr/share/broken && echo x > %{buildroot}/usr/share/broken/x
%files
/usr/share/broken
"""


@pytest.fixture(scope="session")
def broken_repo(repo_dir, build_test_rpms, tmp_path_factory) -> Path:
    built = build_test_rpms({"broken": BROKEN_SPEC})
    repo = tmp_path_factory.mktemp("repo-with-broken")
    for rpm_file in list(Path(repo_dir).rglob("*.rpm")) + list(built.rglob("*.rpm")):
        (repo / rpm_file.name).symlink_to(rpm_file)
    run(["createrepo_c", "--quiet", str(repo)], timeout=120)
    return repo
