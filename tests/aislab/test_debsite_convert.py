"""aislab.debsite on small hand-made .debs: real dpkg-deb, rpmbuild and rpm; every fault reported."""

import json
from pathlib import Path

import pytest

from aislab.debsite.build import file_conflicts, name_clashes
from aislab.debsite.convert import convert
from aislab.debsite.select import Selection
from ais.rpmenv import install_flags
from ais.run import run

POSTINST = """#!/bin/sh
set -e
. /usr/share/debconf/confmodule
db_get alpha/question || true
adduser --system --group --home /var/lib/alpha alpha
update-alternatives --install /usr/bin/alph alph /bin/alpha 20
adduser --system "$NAME"
"""


def make_deb(tmp: Path, name: str, version: str, files: dict[str, str], *, arch: str = "amd64",
             fields: dict[str, str] | None = None, scripts: dict[str, str] | None = None,
             conffiles: list[str] = ()) -> Path:
    """A real .deb built by dpkg-deb from a tree of the given files."""
    tree = tmp / f"{name}-{version.replace(':', '_')}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = {"Package": name, "Version": version, "Architecture": arch, "Maintainer": "t <t@example.org>",
               "Description": f"{name} for tests\n a test package", **(fields or {})}
    (tree / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    for script, text in (scripts or {}).items():
        (tree / "DEBIAN" / script).write_text(text)
        (tree / "DEBIAN" / script).chmod(0o755)
    if conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(c + "\n" for c in conffiles))
    for path, content in files.items():
        full = tree / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            full.symlink_to(content[2:])
        else:
            full.write_text(content)
    deb = tmp / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)])
    return deb


def rpm_query(rpm: Path, fmt: str) -> str:
    return run(["rpm", "-qp", "--qf", fmt, str(rpm)]).stdout


def rpm_q(rpm: Path, *flags: str) -> list[str]:
    return run(["rpm", "-qp", *flags, str(rpm)]).stdout.splitlines()


@pytest.fixture
def alpha(tmp_path):
    files = {"/bin/alpha": "#!/bin/sh\necho alpha\n", "/usr/share/alpha/data": "alpha data\n",
             "/etc/alpha.conf": "setting=1\n", "/usr/share/alpha/[odd] name?.txt": "x\n",
             "/usr/share/alpha/[odd]*": "y\n",
             "/lib/x86_64-linux-gnu/libalpha.so.1": "not really a library\n",
             "/usr/lib/x86_64-linux-gnu/libalpha.so": "->/lib/x86_64-linux-gnu/libalpha.so.1"}
    fields = {"Depends": "libc6 (>= 2.36) | libc-compat, beta:i386, gamma (>> 1.0)", "Pre-Depends": "dash",
              "Provides": "alpha-virtual (= 2.0)", "Breaks": "old-alpha (<< 1.0)",
              "Replaces": "old-alpha (<< 1.0)"}
    deb = make_deb(tmp_path, "alpha", "1:1.2-3-4", files, fields=fields, scripts={"postinst": POSTINST},
                   conffiles=["/etc/alpha.conf"])
    return convert(deb, tmp_path / "repo", tmp_path / "work"), tmp_path / "repo"


def test_a_deb_becomes_an_rpm_with_its_files_usr_merged(alpha):
    conv, repo = alpha
    rpm = repo / conv.rpm
    assert conv.rpm == "RPMS/x86_64/alpha-1.2_3-4.x86_64.rpm" and conv.evr == "1:1.2_3-4"
    assert rpm_query(rpm, "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH}") == "alpha 1 1.2_3 4 x86_64"
    files = rpm_q(rpm, "-l")
    assert "/usr/bin/alpha" in files and "/bin/alpha" not in files
    assert "/usr/lib/x86_64-linux-gnu/libalpha.so.1" in files
    assert "/usr/share/alpha/[odd] name?.txt" in files  # glob characters in a name are that name
    assert "/usr/share/alpha/[odd]*" in files
    assert rpm_q(rpm, "-c") == ["/etc/alpha.conf"]
    assert conv.files["/usr/bin/alpha"][:4] == ["f", 0o644, "root", "root"]


def test_relations_become_rpm_dependencies(alpha):
    conv, repo = alpha
    rpm = repo / conv.rpm
    requires = rpm_q(rpm, "--requires")
    assert "(libc6 >= 2.36-0 or libc-compat)" in requires and "gamma > 1.0-0" in requires
    assert "dash" in requires and not any("beta" in r for r in requires)
    provides = rpm_q(rpm, "--provides")
    assert "alpha-virtual = 2.0-0" in provides and "/bin/alpha" in provides  # the pre-merge path too
    assert rpm_q(rpm, "--conflicts") == ["old-alpha < 1.0-0"]
    assert rpm_q(rpm, "--obsoletes") == ["old-alpha < 1.0-0"]


def test_what_is_lost_is_reported_with_the_package_and_the_reason(alpha):
    conv, _ = alpha
    found = {(f.kind, f.detail.split(":")[0]) for f in conv.findings}
    assert ("untranslatable-dependency", "Depends 'beta") in found
    assert ("version-rewritten", "1") in found
    assert ("untranslatable-script", "postinst 'adduser --system $NAME'") in found
    dropped = [f.detail for f in conv.findings if f.kind == "dropped-script"]
    assert len(dropped) == 1 and "debconf" in dropped[0] and "system user alpha" in dropped[0]
    assert all(f.package == "alpha" for f in conv.findings)


def test_scriptlets_do_the_real_work(alpha):
    conv, repo = alpha
    scripts = run(["rpm", "-qp", "--scripts", str(repo / conv.rpm)]).stdout
    assert "getent passwd alpha >/dev/null || useradd -r -M -g alpha -d /var/lib/alpha" in scripts
    assert 'posix.symlink("/usr/bin/alpha", "/etc/alternatives/alph")' in scripts
    requires = rpm_q(repo / conv.rpm, "--requires")
    assert "passwd" in requires and "base-passwd" in requires  # what the %pre runs


def site(tmp_path, debs):
    convs = {(c.name, v): c for c, v in ((convert(d, tmp_path / "repo", tmp_path / "work"), v) for d, v in debs)}
    names = {name for name, _ in convs}
    sel = Selection({"base": sorted(names)}, {("base", 1): names},
                    {(name, 1): version for name, version in convs})
    return sel, convs


def test_a_file_conflict_with_replaces_drops_the_replaced_copy_else_is_reported(tmp_path):
    shared = "/usr/share/doc/common/README"
    debs = [(make_deb(tmp_path, "one", "1.0-1", {shared: "one\n"}), "1.0-1"),
            (make_deb(tmp_path, "two", "1.0-1", {shared: "two\n"}, fields={"Replaces": "one"}), "1.0-1"),
            (make_deb(tmp_path, "three", "1.0-1", {shared: "three\n"}), "1.0-1"),
            (make_deb(tmp_path, "four", "1.0-1", {shared: "three\n", "/usr/share/four": "4\n"}), "1.0-1")]
    sel, convs = site(tmp_path, debs)
    exclude, findings = file_conflicts(sel, convs)
    assert exclude == {"one": {shared}}
    [finding] = findings
    assert finding.kind == "file-conflict" and shared in finding.detail
    assert "left out of one (Replaces)" in finding.detail
    assert "four 0:1.0-1 and one 0:1.0-1 and three 0:1.0-1 and two 0:1.0-1" in finding.detail
    rebuilt = convert(debs[0][0], tmp_path / "repo", tmp_path / "work", exclude=exclude["one"])
    assert shared not in rebuilt.files and any(f.kind == "file-conflict" for f in rebuilt.findings)


def test_identical_files_and_shared_directories_are_no_conflict(tmp_path):
    debs = [(make_deb(tmp_path, "one", "1.0-1", {"/usr/share/x/same": "same\n"}), "1.0-1"),
            (make_deb(tmp_path, "two", "1.0-1", {"/usr/share/x/same": "same\n"}), "1.0-1")]
    sel, convs = site(tmp_path, debs)
    assert file_conflicts(sel, convs) == ({}, [])


def test_two_debs_giving_one_rpm_file_are_a_name_clash(tmp_path):
    debs = [(make_deb(tmp_path, "dup", "1:1.0-1", {"/usr/share/dup": "a\n"}), "1:1.0-1"),
            (make_deb(tmp_path, "dup", "1.0-1", {"/usr/share/dup": "b\n"}), "1.0-1")]
    convs = {("dup", v): convert(d, tmp_path / f"repo{i}", tmp_path / "work") for i, (d, v) in enumerate(debs)}
    [clash] = name_clashes(convs)
    assert clash.kind == "name-clash" and clash.package == "dup"
    assert "dup 1.0-1, dup 1:1.0-1 all become RPMS/x86_64/dup-1.0-1.x86_64.rpm" == clash.detail


def test_a_real_install_of_converted_debs_runs_their_scriptlets(tmp_path):
    """usr-merged tree, /etc/passwd from base-passwd, a system user, an alternative: rpm --root, no shell."""
    lua_only = make_deb(tmp_path, "alty", "2.0-1", {"/bin/alty": "#!/bin/true\n"},
                        scripts={"postinst": "update-alternatives --install /usr/bin/al al /bin/alty 5\n"})
    conv = convert(lua_only, tmp_path / "repo", tmp_path / "work")
    root = tmp_path / "root"
    root.mkdir()
    proc = run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *install_flags(), "-i", "--nodeps",
                str(tmp_path / "repo" / conv.rpm)], check=False)
    assert proc.returncode == 0 and "failed" not in proc.stderr, proc.stderr
    assert (root / "usr/bin/alty").is_file() and not (root / "bin").exists()
    assert (root / "usr/bin/al").readlink() == Path("/etc/alternatives/al")
    assert (root / "etc/alternatives/al").readlink() == Path("/usr/bin/alty")
    assert json.loads(json.dumps(conv.files))["/usr/bin/alty"][0] == "f"



def test_passwd_and_group_are_config_whose_contents_rpm_does_not_verify(tmp_path):
    deb = make_deb(tmp_path, "base-passwd", "3.6.1", {"/usr/share/base-passwd/passwd.master": "root:x:0:0::/:/bin/sh\n",
                                                     "/usr/share/base-passwd/group.master": "root:x:0:\n"})
    conv = convert(deb, tmp_path / "repo", tmp_path / "work")
    rpm = tmp_path / "repo" / conv.rpm
    assert sorted(rpm_q(rpm, "-c")) == ["/etc/group", "/etc/passwd"]
    flags = run(["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEVERIFYFLAGS:octal}\n]", str(rpm)]).stdout
    verify = dict(line.split() for line in flags.splitlines())
    assert int(verify["/etc/passwd"], 8) & 1 == 0 and int(verify["/etc/group"], 8) & 1 == 0  # no md5
    assert int(verify["/usr/share/base-passwd/passwd.master"], 8) & 1 == 1


BAD_ARGS = [
    (["--roles", "web,nope"], "unknown role(s) nope"),
    (["--roles", "web", "--base-only", "--jobs", "x"], "invalid int value"),
]


@pytest.mark.parametrize("args, words", BAD_ARGS)
def test_bad_builder_arguments_exit_2_and_build_nothing(tmp_path, args, words):
    import sys

    out = tmp_path / "repo"
    proc = run([sys.executable, "-m", "aislab.debsite", "--out", str(out), "--debs", str(tmp_path / "debs"), *args],
               check=False, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() and not (tmp_path / "debs").exists()
