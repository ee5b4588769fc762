"""A host switched off while it applies an update: at its next start it catches up, in sequence
order, and its rpm database is consistent (a real agent of aislab.update_farm, real rpm).

Deterministic: update B installs upd-hang, a package built here whose %post writes
/var/log/hang-started and then waits for /release-hang (paths in the host's root, where
scriptlets run). The test waits for the marker, so the power cut (SIGKILL of the agent, its
rpm transaction and the scriptlet's shell) always falls inside B's rpm transaction. upd-hang
requires upd-02 >= 2.0, so rpm has already added upd-02 2.0 and not yet erased 1.0: the cut
leaves a half-done upgrade (both in the database). Then either update C (upd-02 3.0) comes while
the host is off, or nothing does and the host must finish B itself.
"""

import re

import pytest

from ais.rpmenv import installed_nevras, verify
from ais.run import run
from aislab.demo_repo import BUILD_ENV, RPMBUILD_TIMEOUT, rpmbuild_defines
from aislab.update_farm import UpdateFarm
from aislab.update_rpms import PACKAGES

pytestmark = [pytest.mark.root, pytest.mark.rpm, pytest.mark.slow]
OPTIONS = ("--idle-seconds", "0.5", "--sample-seconds", "0.25", "--sync-seconds", "1", "--refresh-seconds", "3")
TIMEOUT = 120  # a safety net, never a moment the test relies on
HANG_MARKER = "var/log/hang-started"
HANG_RELEASE = "release-hang"
HANG_SPEC = f"""%define debug_package %{{nil}}
Name: upd-hang
Version: 1.0
Release: 1
Summary: AIS lab package whose %post blocks until released
License: MIT
BuildArch: noarch
AutoReqProv: no
Requires: /bin/sh
Requires: upd-02 >= 2.0

%description
Its %post says it started, then waits for /{HANG_RELEASE}: a test switches the host off meanwhile.

%install
mkdir -p %{{buildroot}}/usr/share/upd/upd-hang
echo "upd-hang 1.0" > %{{buildroot}}/usr/share/upd/upd-hang/data

%files
%defattr(-,root,root,-)
%dir /usr/share/upd
/usr/share/upd/upd-hang

%post
echo started > /{HANG_MARKER}
while [ ! -e /{HANG_RELEASE} ]; do sleep 0.1; done
"""


@pytest.fixture(scope="module")
def hang_rpm(tmp_path_factory):
    """upd-hang-1.0-1.noarch.rpm, built with the lab's rpmbuild setup."""
    topdir = tmp_path_factory.mktemp("hang-rpm")
    spec = topdir / "upd-hang.spec"
    spec.write_text(HANG_SPEC)
    run(["rpmbuild", *rpmbuild_defines(PACKAGES, topdir), str(spec)], env=BUILD_ENV, timeout=RPMBUILD_TIMEOUT)
    (rpm,) = (topdir / "RPMS").glob("*/upd-hang-1.0-1.noarch.rpm")
    return rpm


@pytest.fixture
def farm(tmp_path, repo_dir, hang_rpm):
    with UpdateFarm(tmp_path, repo_dir, hosts=2, agent_options=OPTIONS, extra_rpms=[hang_rpm]) as farm:
        yield farm


def _state(farm, i, seq):
    return farm.results().get((farm.names[i], seq), {}).get("state")


@pytest.mark.parametrize("then", ["update C while off", "nothing while off"])
def test_power_cut_during_an_update_catches_up_in_sequence_order(farm, hang_rpm, then):
    root = farm.base / "roots" / farm.names[0]
    farm.start_agent(0)
    a = farm.submit("all", [farm.op("upd-01", "2.0")])["update"]["seq"]
    farm.wait(lambda: _state(farm, 0, a) == "applied", TIMEOUT, "h01 to apply update A")

    hang = farm.rpm_op(hang_rpm)
    b = farm.submit("all", [farm.op("upd-02", "2.0"), hang])["update"]["seq"]
    farm.wait(lambda: (root / HANG_MARKER).exists(), TIMEOUT, "update B's transaction to reach upd-hang's %post")
    farm.kill_agent(0)  # the power cut, inside B's rpm transaction

    after_cut = installed_nevras(root)  # the rpm database is readable (no lock left, not corrupt)
    assert farm.updates.nevra("upd-01", "2.0") in after_cut
    assert hang["nevra"] in after_cut  # rpm adds the header before %post: the cut fell inside B
    assert {farm.updates.nevra("upd-02", v) for v in ("1.0", "2.0")} <= after_cut  # half-done upgrade
    assert _state(farm, 0, b) != "applied"

    seqs = [b]
    if then == "update C while off":
        seqs.append(farm.submit("all", [farm.op("upd-02", "3.0")])["update"]["seq"])
    last = "3.0" if len(seqs) == 2 else "2.0"
    (root / HANG_RELEASE).touch()
    farm.start_agent(0)
    farm.wait(lambda: all(_state(farm, 0, s) == "applied" for s in seqs), TIMEOUT,
              f"h01 to apply updates {seqs} after its restart")

    log = farm.log(0)
    assert re.search(rf"the last transaction was interrupted \(updates {b}\)", log), log
    assert farm.installed(0) == farm.expected(0)
    assert farm.updates.nevra("upd-02", last) in farm.installed(0)
    assert hang["nevra"] in farm.installed(0)
    bad = [line for line in verify(root).splitlines() if "upd" in line]
    assert bad == [], bad
    upd02 = [line for line in (root / "var/log/upd.log").read_text().splitlines() if line.startswith("upd-02 ")]
    assert upd02[:2] == ["upd-02 1.0", "upd-02 2.0"], upd02  # the initial root, then B before the cut
    assert upd02[-1] == f"upd-02 {last}", upd02  # the last update's version last: sequence order
