"""The built demo repository installs for real: base + a role in ONE rpm transaction
into a fresh root, without --nodeps; scriptlets run under busybox /bin/sh in the chroot."""

import subprocess
from pathlib import Path

import pytest

from ais.errors import ToolError
from ais.run import run

BASE = ["filesystem", "busybox-base", "setup", "libc", "kernel", "rpm-tools", "logrotate"]
WEB = ["httpd", "httpd-filesystem", "mod_ssl", "php", "php-common", "libpcre", "libssl"]
DB = ["postgresql-server", "postgresql-libs", "postgresql-contrib"]


def rpm(root: Path, *args) -> subprocess.CompletedProcess:
    return run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--force-debian", *args])


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


def test_base_and_web_install_in_one_transaction(repo_dir, root):
    install(repo_dir, root, BASE + WEB)
    assert installed(root) == set(BASE + WEB)
    assert (root / "var/lib/logrotate/post-ran").read_text() == "post 1\n"
    assert (root / "var/lib/httpd/post-ran").read_text() == "post 1\n"
    assert (root / "var/www/html/index.html").read_text() == "AIS demo httpd\n"
    assert (root / "var/lib/rpm/rpmdb.sqlite").is_file()
    assert not (root / "root/.rpmdb").exists()
    assert (root / "boot/vmlinuz-6.1.0-1").stat().st_size == 6291456
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
