"""ais.rpmenv against real rpm: scriptlets run in the root, and their failures are caught.

rpm 4.18 exits 0 when a %post scriptlet fails; AIS must not take that for success.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ais.errors import BuildError, ToolError
from ais.rpmenv import install_flags, installed_nevras, rpm_install, verify

FAILING_POST = """\
%define debug_package %{nil}
Name: failpost
Version: 1.0
Release: 1
Summary: its post scriptlet fails
License: MIT
BuildArch: x86_64
AutoReqProv: no
%description
Test package.
%install
mkdir -p %{buildroot}/usr/share/failpost && echo x > %{buildroot}/usr/share/failpost/x
%post
exit 3
%files
/usr/share/failpost
"""


@pytest.fixture(scope="module")
def failpost_rpm(build_test_rpms) -> Path:
    return next(build_test_rpms({"failpost": FAILING_POST}).rglob("failpost-*.rpm"))


def rpms(repo: Path, *names: str) -> list[Path]:
    return [next((repo / "RPMS").rglob(f"{name}-[0-9]*.rpm")) for name in names]


BASE = ("filesystem", "busybox-base", "setup", "libc")


def test_install_runs_scriptlets_and_records_set(repo_dir, tmp_path):
    rpm_install(tmp_path, rpms(repo_dir, *BASE, "logrotate"))
    nevras = installed_nevras(tmp_path)
    assert {n.split("-0:")[0] for n in nevras} == set(BASE) | {"logrotate"}
    assert (tmp_path / "var/lib/logrotate/post-ran").read_text().strip() == "post 1"
    assert verify(tmp_path) == ""
    assert (tmp_path / "var/lib/rpm").is_dir() and not (tmp_path / "root/.rpmdb").exists()


def test_failing_post_scriptlet_is_an_error_although_rpm_exits_0(repo_dir, failpost_rpm, tmp_path):
    with pytest.raises(BuildError, match=r"%post\(failpost-1.0-1.x86_64\) scriptlet failed"):
        rpm_install(tmp_path, rpms(repo_dir, *BASE) + [failpost_rpm])


def test_missing_shell_is_refused(repo_dir, failpost_rpm, tmp_path):
    with pytest.raises(ToolError, match="/bin/sh"):
        rpm_install(tmp_path, rpms(repo_dir, "filesystem") + [failpost_rpm])


FAKE_RPM = """\
#!/bin/sh
# A stand-in for the rpm of an RPM-based system (or of Debian, with DEBIAN=1): it logs
# its arguments, and refuses --force-debian unless it is Debian's.
echo "$@" >> "{log}"
case " $* " in
  *" --help "*) echo "Usage: rpm [OPTION...]"; [ {debian} = 1 ] && echo "  --force-debian   force installation of rpm on Debian system"; exit 0;;
  *" --force-debian "*) [ {debian} = 1 ] || {{ echo "rpm: --force-debian: unknown option" >&2; exit 1; }};;
esac
exit 0
"""


@pytest.mark.parametrize("debian, flag_passed", [(False, False), (True, True)],
                         ids=["rpm-based-system", "debian"])
def test_force_debian_only_for_debians_rpm(tmp_path, monkeypatch, debian, flag_passed):
    bindir, log = tmp_path / "bin", tmp_path / "argv.log"
    bindir.mkdir()
    fake = bindir / "rpm"
    fake.write_text(FAKE_RPM.format(log=log, debian=int(debian)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    rpm_install(tmp_path / "root", [tmp_path / "x.rpm"])
    installs = [line for line in log.read_text().splitlines() if " -i " in f" {line} "]
    assert len(installs) == 1, log.read_text()
    assert ("--force-debian" in installs[0].split()) is flag_passed
    assert "--dbpath /var/lib/rpm" in installs[0]


def test_debians_rpm_gets_force_debian():
    assert "--force-debian" in install_flags()
