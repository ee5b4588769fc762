"""Resolution by libsolv on real RPMs: ranges, rich dependencies, conflicts, obsoletes.

Every case loads a site (a base SCD and one system SCD) against the repository
of `conftest.SPECS`, built by rpmbuild in the test session.
"""

from __future__ import annotations

import pytest

from ais.descriptors import load_site
from ais.errors import DescriptorError

from .conftest import line_of, write_site


def resolve(tmp_path, repo, packages: list[str]) -> set[str]:
    """Names of the packages of the system configuration."""
    site = load_site(write_site(tmp_path / "d", packages), repo)
    return {p.name for p in site.configuration("sys").packages}


def problems(tmp_path, repo, packages: list[str]) -> list[str]:
    """Each problem as 'file:line: message', file relative to the descriptors directory."""
    directory = write_site(tmp_path / "d", packages)
    with pytest.raises(DescriptorError) as info:
        load_site(directory, repo)
    return [str(p).replace(f"{directory}/", "") for p in info.value.problems]


def test_ranged_provide_does_not_satisfy_a_disjoint_range(tmp_path, dep_repo):
    # oldfoo (9.0, the newest package) provides foo < 1; only newfoo's foo = 3 meets foo > 2
    names = resolve(tmp_path, dep_repo, ["wantsfoo"])
    assert "newfoo" in names and "oldfoo" not in names


def test_only_a_disjoint_ranged_provide_is_unsatisfiable_at_the_scd_line(tmp_path, dep_repo):
    packages = ["aaa", "wantslegacy"]
    found = problems(tmp_path, dep_repo, packages)
    assert len(found) == 1, found
    assert found[0].startswith(f"scd/sys.xml:{line_of(packages, 'wantslegacy')}: "), found
    assert "legacy > 2" in found[0] and "wantslegacy" in found[0]


def test_rich_or_takes_one_alternative(tmp_path, dep_repo):
    names = resolve(tmp_path, dep_repo, ["richor"])
    assert len({"aaa", "bbb"} & names) == 1, names


@pytest.mark.parametrize("requested, pulled", [
    (["richif"], False),  # the condition ddd is absent: ccc not needed
    (["richif", "ddd"], True),  # ddd present: ccc must come
])
def test_rich_if_applies_only_under_its_condition(tmp_path, dep_repo, requested, pulled):
    names = resolve(tmp_path, dep_repo, requested)
    assert ("ccc" in names) is pulled, names


def test_conflicting_requests_are_refused_naming_both_lines(tmp_path, dep_repo):
    packages = ["confa", "aaa", "confb"]
    found = problems(tmp_path, dep_repo, packages)
    assert len(found) == 1, found
    assert "conflicts with" in found[0] and "confb" in found[0]
    for name in ("confa", "confb"):
        assert f"scd/sys.xml:{line_of(packages, name)}" in found[0], found


def test_obsoleted_request_is_refused(tmp_path, dep_repo):
    packages = ["oldname", "newname"]
    found = problems(tmp_path, dep_repo, packages)
    assert len(found) == 1, found
    assert "obsoletes" in found[0] and "oldname" in found[0], found
    assert found[0].startswith("scd/sys.xml:"), found


def test_backtracks_from_a_conflicting_first_provider(tmp_path, dep_repo):
    names = resolve(tmp_path, dep_repo, ["app"])
    assert {"app", "bar", "impl-old"} <= names and "impl-new" not in names, names


def test_unsatisfiable_request_names_the_scd_line_and_the_need(tmp_path, dep_repo):
    packages = ["aaa", "broken-t"]
    found = problems(tmp_path, dep_repo, packages)
    assert found == [f"scd/sys.xml:{line_of(packages, 'broken-t')}: unsatisfied dependency: "
                     "broken-t-0:1.0-1.x86_64 needs 'libimaginary >= 2', which no package in the "
                     "repository provides; remove this request or add a package that provides it"], found


def test_every_problem_at_once(tmp_path, dep_repo):
    packages = ["broken-t", "confa", "confb", "wantslegacy", "nosuchpkg"]
    found = problems(tmp_path, dep_repo, packages)
    lines = {int(p.split(":")[1]) for p in found}
    assert {line_of(packages, n) for n in ("broken-t", "wantslegacy", "nosuchpkg")} <= lines, found
    assert any("conflicts with" in p for p in found), found
    assert any("'nosuchpkg' is not in the repository" in p for p in found), found


def test_package_requires_include_install_time_requirements(dep_repo):
    """Requires(pre) and Requires(post) are requirements too (rpm refuses an image set without them)."""
    from ais.repo.solver import RepoPool

    pkg = next(p for p in RepoPool(dep_repo).packages if p.name == "prereq-t")
    assert set(pkg.requires) == {"aaa", "bbb", "ccc"}
