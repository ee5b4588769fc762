"""aislab.update_rpms: a small update set (3 names x 2 versions) built by real rpmbuild, installed by real rpm.

The base packages (busybox-base, filesystem) come from the demo repository's own specs,
built by the real builder (conftest's build_test_rpms), so the test needs no full demo repo.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ais.errors import BuildError, UsageError
from ais.rpmenv import installed_nevras, rpm_install
from ais.run import run
from aislab import update_rpms
from aislab.update_rpms import MAX_SIZE, MIN_SIZE, build_update_rpms, copy_root, make_host_root, payload_size

PACKAGES = Path(__file__).resolve().parents[2] / "packages"
NAMES = ("upd-01", "upd-02", "upd-03")
VERSIONS = ("1.0", "2.0")

pytestmark = pytest.mark.rpm  # rpmbuild and rpm, in every test


def quiet(line):
    pass


def query(rpm: Path, fmt: str) -> str:
    return run(["rpm", "-qp", "--qf", fmt, rpm]).stdout


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


@pytest.fixture(scope="module")
def update_set(tmp_path_factory):
    return build_update_rpms(tmp_path_factory.mktemp("upd") / "set", names=3, versions=2)


@pytest.fixture(scope="module")
def base_repo(build_test_rpms) -> Path:
    return build_test_rpms({name: (PACKAGES / f"{name}.spec").read_text() for name in ("busybox-base", "filesystem")})


@pytest.fixture(scope="module")
def template(update_set, base_repo, tmp_path_factory) -> Path:
    return make_host_root(tmp_path_factory.mktemp("roots") / "template", base_repo, update_set)


def test_the_set_holds_every_name_at_every_version_with_its_nevra(update_set):
    assert update_set.names == NAMES and update_set.versions == VERSIONS
    rpms = sorted(p.name for p in update_set.dir.glob("*.rpm"))
    assert rpms == sorted(f"{n}-{v}-1.noarch.rpm" for n in NAMES for v in VERSIONS)
    for name in NAMES:
        for version in VERSIONS:
            got = query(update_set.rpm(name, version), "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}")
            assert got == update_set.nevra(name, version) == f"{name}-0:{version}-1.noarch"
    with pytest.raises(UsageError):
        update_set.rpm("upd-04", "1.0")


def test_payloads_are_incompressible_data_of_the_promised_size(update_set):
    sizes = set()
    for name in NAMES:
        for version in VERSIONS:
            rpm = update_set.rpm(name, version)
            files = dict(line.split() for line in query(rpm, "[%{FILENAMES} %{FILESIZES}\\n]").splitlines())
            data = int(files[f"/usr/share/upd/{name}/data"])
            assert MIN_SIZE <= data <= MAX_SIZE and data == payload_size(name, version)
            assert update_set.size(name, version) > data  # compression could not shrink it
            sizes.add(data)
    assert len(sizes) > 1  # sizes differ per name and version


def test_scriptlets_log_the_version_and_need_a_shell(update_set):
    rpm = update_set.rpm("upd-02", "2.0")
    scripts = run(["rpm", "-qp", "--scripts", rpm]).stdout
    assert 'echo "upd-02 2.0" >> /var/log/upd.log' in scripts
    assert "postuninstall scriptlet" in scripts
    assert "/bin/sh" in query(rpm, "[%{REQUIRES}\\n]").splitlines()


def test_a_second_call_rebuilds_nothing(update_set):
    before = mtimes(update_set.dir)
    again = build_update_rpms(update_set.dir, names=3, versions=2)
    assert again == update_set
    assert mtimes(update_set.dir) == before


def test_a_missing_rpm_rebuilds_the_set_and_other_counts_replace_it(tmp_path):
    out = tmp_path / "set"
    first = build_update_rpms(out, names=2, versions=1)
    first.rpm("upd-02", "1.0").unlink()
    build_update_rpms(out, names=2, versions=1)
    assert first.rpm("upd-02", "1.0").is_file()
    second = build_update_rpms(out, names=1, versions=2)
    assert sorted(p.name for p in out.glob("*.rpm")) == ["upd-01-1.0-1.noarch.rpm", "upd-01-2.0-1.noarch.rpm"]
    assert json.loads((out / "update-set.json").read_text())["digest"] == second.digest != first.digest


def test_an_interrupted_build_leaves_the_old_set_whole(tmp_path, monkeypatch):
    out = tmp_path / "set"
    build_update_rpms(out, names=2, versions=1)
    before = mtimes(out)
    real = update_rpms.build_version

    def fails_on_2(names, version, work, dest):
        if version == "2.0":
            raise BuildError("rpmbuild died")
        return real(names, version, work, dest)

    monkeypatch.setattr(update_rpms, "build_version", fails_on_2)
    with pytest.raises(BuildError):
        build_update_rpms(out, names=2, versions=2)
    assert mtimes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # the unfinished set is gone too


def test_bad_counts_and_foreign_directories_are_refused(tmp_path):
    for names, versions in ((0, 1), (100, 1), (1, 0), (True, 1)):
        with pytest.raises(UsageError):
            build_update_rpms(tmp_path / "set", names=names, versions=versions)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not replacing"):
        build_update_rpms(tmp_path / "mine", names=1, versions=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_host_root_has_the_base_and_every_update_at_1_0(template, update_set):
    nevras = installed_nevras(template)
    upds = {update_set.nevra(name, "1.0") for name in NAMES}
    assert {n for n in nevras if n.startswith("upd-")} == upds
    assert {n.rsplit("-", 2)[0] for n in nevras - upds} == {"busybox-base", "filesystem"}
    assert sorted((template / "var/log/upd.log").read_text().splitlines()) == [f"{n} 1.0" for n in NAMES]
    assert len((template / "usr/share/upd/upd-01/data").read_bytes()) == payload_size("upd-01", "1.0")


def test_the_host_root_is_built_once(template, update_set, base_repo):
    db = template / "var/lib/rpm/rpmdb.sqlite"
    before = db.stat().st_mtime_ns
    assert make_host_root(template, base_repo, update_set) == template
    assert db.stat().st_mtime_ns == before


def test_an_update_on_a_copy_leaves_the_template_alone(template, update_set, tmp_path):
    log_before = (template / "var/log/upd.log").read_text()
    nevras_before = installed_nevras(template)
    host = copy_root(template, tmp_path / "hosts" / "h1")
    rpm_install(host, [update_set.rpm("upd-02", "2.0")], upgrade=True)
    nevras = installed_nevras(host)
    assert update_set.nevra("upd-02", "2.0") in nevras and update_set.nevra("upd-02", "1.0") not in nevras
    assert nevras - {update_set.nevra("upd-02", "2.0")} == nevras_before - {update_set.nevra("upd-02", "1.0")}
    assert (host / "var/log/upd.log").read_text() == log_before + "upd-02 2.0\n"
    assert len((host / "usr/share/upd/upd-02/data").read_bytes()) == payload_size("upd-02", "2.0")
    assert installed_nevras(template) == nevras_before
    assert (template / "var/log/upd.log").read_text() == log_before
    with pytest.raises(UsageError):
        copy_root(template, host)


def test_a_repo_without_base_packages_is_an_error(update_set, tmp_path):
    with pytest.raises(BuildError, match="busybox-base|filesystem"):
        make_host_root(tmp_path / "root", tmp_path, update_set)
