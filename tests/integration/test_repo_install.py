"""The built demo repository installs for real: base + a role in ONE rpm transaction
into a fresh root, without --nodeps; scriptlets run under busybox /bin/sh in the chroot.
And libsolv's answers agree with rpm's own transaction check (`rpm -i --test` into an
empty root): every demo configuration installs, and package sets that break a ranged
provide, a rich dependency, a conflict or an obsoletes are refused by both."""

import subprocess
from pathlib import Path

import pytest

from ais.errors import ToolError
from ais.rpmenv import install_flags, rpm_cmd
from ais.run import run

BASE = ["filesystem", "busybox-base", "setup", "libc", "kernel", "rpm-tools", "logrotate"]
WEB = ["httpd", "httpd-filesystem", "mod_ssl", "php", "php-common", "libpcre", "libssl"]
DB = ["postgresql-server", "postgresql-libs", "postgresql-contrib"]


def rpm(root: Path, *args) -> subprocess.CompletedProcess:
    return run(rpm_cmd(root, *args, *(install_flags() if args[0].startswith("-i") else ())))


def newest(repo: Path, name: str) -> Path:
    """The RPM of `name` with the highest release (libssl has two patch levels)."""
    found = [p for p in (repo / "RPMS" / "x86_64").glob(f"{name}-*.rpm")
             if run(["rpm", "-qp", "--qf", "%{NAME}", p]).stdout == name]
    assert found, name
    return max(found, key=lambda p: run(["rpm", "-qp", "--qf", "%{RELEASE}", p]).stdout)


def install(repo: Path, root: Path, names: list[str]) -> str:
    proc = rpm(root, "-ivh", *[newest(repo, n) for n in names])
    output = proc.stdout + proc.stderr
    for bad in ("scriptlet failed", "/bin/sh is needed", "execv("):
        assert bad not in output, output
    return output


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


def installed(root: Path) -> set[str]:
    return set(rpm(root, "-qa", "--qf", "%{NAME}\\n").stdout.split())


def test_base_and_web_install_in_one_transaction(repo_dir, demo_kernel, root):
    install(repo_dir, root, BASE + WEB)
    assert installed(root) == set(BASE + WEB)
    assert (root / "var/lib/logrotate/post-ran").read_text() == "post 1\n"
    assert (root / "var/lib/httpd/post-ran").read_text() == "post 1\n"
    assert (root / "var/www/html/index.html").read_text() == "AIS demo httpd\n"
    assert (root / "var/lib/rpm/rpmdb.sqlite").is_file()
    assert not (root / "root/.rpmdb").exists()
    for real in (demo_kernel.kernel, demo_kernel.initrd):  # the kernel package's real files, whole
        assert (root / "boot" / real.name).read_bytes() == real.read_bytes()
    out = run(["chroot", root, "/bin/sh", "-c", "echo ok; ls /etc/passwd; cat /etc/shells"]).stdout
    assert out == "ok\n/etc/passwd\n/bin/sh\n/bin/ash\n"
    assert rpm(root, "-q", "--qf", "%{VERSION}-%{RELEASE}", "libssl").stdout == "3.0.1-2"
    assert rpm(root, "-q", "--whatprovides", "webserver", "--qf", "%{NAME}").stdout == "httpd"


def test_db_role_scriptlets_run_on_install_and_erase(repo_dir, root):
    install(repo_dir, root, BASE + DB)
    assert (root / "var/lib/pgsql/data/PG_VERSION").read_text() == "15\n"
    assert (root / "var/lib/postgresql-server/post-ran").read_text() == "post 1\n"
    rpm(root, "-e", "postgresql-contrib", "postgresql-server")
    assert (root / "var/lib/postgresql-server/preun-ran").read_text() == "preun 0\n"
    assert installed(root) == set(BASE) | {"postgresql-libs"}


def test_role_without_its_base_is_refused(repo_dir, root):
    """Without busybox-base nothing provides /bin/sh: rpm must refuse, not half-install."""
    with pytest.raises(ToolError, match="/bin/sh"):
        rpm(root, "-i", *[newest(repo_dir, n) for n in ["filesystem", "libc", "logrotate"]])


# --- libsolv's answers cross-checked against rpm's own transaction check ---------------

DEMO = Path(__file__).resolve().parents[2] / "descriptors"
DEMO_SCDS = sorted(p.stem for p in DEMO.glob("scd/*.xml"))


def rpm_accepts(repo: Path, root: Path, files: list[str]) -> tuple[bool, str]:
    """Whether `rpm -i --test` of files into the empty root succeeds, and what it said."""
    proc = run(rpm_cmd(root, "-i", "--test", *install_flags(), *[repo / f for f in files]), check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def demo_site(repo_dir):
    from ais.descriptors import load_site

    return load_site(DEMO, repo_dir)


@pytest.mark.parametrize("scd", DEMO_SCDS)
def test_rpm_accepts_every_demo_configuration(demo_site, repo_dir, tmp_path, scd):
    conf = demo_site.configuration(scd)
    ok, said = rpm_accepts(repo_dir, tmp_path / "root", [p.filename for p in conf.packages])
    assert ok, f"{scd}: rpm refuses what libsolv resolved:\n{said}"


def test_rpm_refuses_a_demo_configuration_missing_a_dependency(demo_site, repo_dir, tmp_path):
    conf = demo_site.configuration("web-1")
    files = [p.filename for p in conf.packages if p.name != "libssl"]
    ok, said = rpm_accepts(repo_dir, tmp_path / "root", files)
    assert not ok and "libssl" in said


def spec(name: str, version: str = "1.0", *deps: str) -> str:
    lines = "\n".join(deps)
    return (f"%define debug_package %{{nil}}\nName: {name}\nVersion: {version}\nRelease: 1\n"
            f"Summary: {name}\nLicense: MIT\nBuildArch: x86_64\nAutoReqProv: no\n{lines}\n"
            f"%description\nCross-check package.\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n"
            f"echo {name} > %{{buildroot}}/usr/share/{name}/f\n%files\n/usr/share/{name}\n")


CROSS_SPECS = {
    "aaa": spec("aaa"), "bbb": spec("bbb"), "ccc": spec("ccc"), "ddd": spec("ddd"),
    "oldfoo": spec("oldfoo", "9.0", "Provides: foo < 1"),
    "newfoo": spec("newfoo", "1.0", "Provides: foo = 3"),
    "wantsfoo": spec("wantsfoo", "1.0", "Requires: foo > 2"),
    "richor": spec("richor", "1.0", "Requires: (aaa or bbb)"),
    "richif": spec("richif", "1.0", "Requires: (ccc if ddd)"),
    "confa": spec("confa", "1.0", "Conflicts: confb"), "confb": spec("confb"),
    "oldname": spec("oldname"), "newname": spec("newname", "2.0", "Obsoletes: oldname < 2"),
    "impl-new": spec("impl-new", "2.0", "Provides: lib-impl", "Conflicts: bar"),
    "impl-old": spec("impl-old", "1.0", "Provides: lib-impl"),
    "app": spec("app", "1.0", "Requires: lib-impl", "Requires: bar"), "bar": spec("bar"),
}

# (package set installed alone, whether it installs)
CROSS_SETS = [
    (["wantsfoo", "newfoo"], True),
    (["wantsfoo", "oldfoo"], False),  # foo < 1 does not meet foo > 2
    (["richor", "bbb"], True),
    (["richor"], False),
    (["richif"], True),
    (["richif", "ddd"], False),
    (["richif", "ddd", "ccc"], True),
    (["confa", "confb"], False),
    (["newname", "oldname"], False),  # rpm's check passes, but it installs newname only
    (["app", "impl-old", "bar"], True),
    (["app", "impl-new", "bar"], False),
]


@pytest.fixture(scope="module")
def cross_repo(build_test_rpms):
    from ais.repo.solver import RepoPool

    repo = build_test_rpms(CROSS_SPECS)
    return repo, RepoPool(repo)


@pytest.mark.parametrize("names, installs", CROSS_SETS, ids=["+".join(s) for s, _ in CROSS_SETS])
def test_libsolv_and_rpm_agree(cross_repo, tmp_path, names, installs):
    from ais.repo.solver import Request

    repo, pool = cross_repo
    resolution = pool.resolve([Request(n) for n in names])
    libsolv_ok = not resolution.problems and {p.name for p in resolution.packages} == set(names)
    files = [p.filename for p in pool.packages if p.name in names]
    rpm_ok, said = rpm_installs_exactly(repo, tmp_path / "root", files, names)
    assert (libsolv_ok, rpm_ok) == (installs, installs), (resolution.problems, said)


def rpm_installs_exactly(repo: Path, root: Path, files: list[str], names: list[str]) -> tuple[bool, str]:
    """rpm's check passes and a real install leaves exactly these packages (obsoletes drop some)."""
    ok, said = rpm_accepts(repo, root, files)
    if not ok:
        return False, said
    run(rpm_cmd(root, "-i", *install_flags(), *[repo / f for f in files]))
    left = installed(root)
    return left == set(names), f"rpm installed {sorted(left)}"
