"""The agent's rpm transaction (ais.agent.transaction, run as `ais agent transaction ROOT`) on a real root:
installs and erases in ONE transaction; every refusal (a name not installed, a file that is not an RPM, a
missing dependency) applies nothing; a failing %post is reported although rpm installed the package
(rpm cannot roll back: the agent calls that a failure for good); a malformed request exits 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aislab.net import ais_command
from ais.agent.transaction import apply
from ais.rpmenv import installed_nevras, rpm_install
from tests.integration.test_rpmenv import BASE, FAILING_POST, rpms

pytestmark = [pytest.mark.rpm]


@pytest.fixture
def root(tmp_path, repo_dir) -> Path:
    root = tmp_path / "root"
    rpm_install(root, rpms(repo_dir, *BASE, "make"))
    return root


def names(root: Path) -> set[str]:
    return {n.split("-0:")[0] for n in installed_nevras(root)}


def test_install_and_erase_in_one_transaction(root, repo_dir):
    answer = apply(str(root), [str(p) for p in rpms(repo_dir, "logrotate")], ["make"])
    assert answer == {"ok": True, "problems": [], "script_errors": []}
    assert "logrotate" in names(root) and "make" not in names(root)


@pytest.mark.parametrize("case, install, erase, words", [
    ("a name not installed", [], ["no-such-package"], "package not installed"),
    ("a file that is not an RPM", ["/etc/hostname"], ["make"], "error reading package header"),
    ("a missing dependency", ["dep"], ["libc"], "libc is needed by"),  # erasing libc breaks make
])
def test_a_refused_transaction_applies_nothing(root, repo_dir, case, install, erase, words):
    before = installed_nevras(root)
    paths = [str(p) for p in rpms(repo_dir, "logrotate")] if install == ["dep"] else install
    answer = apply(str(root), paths, erase)
    assert not answer["ok"] and words in " ".join(answer["problems"]), answer
    assert installed_nevras(root) == before


def test_a_failing_post_is_reported_though_rpm_installed_it(root, build_test_rpms):
    failpost = next(build_test_rpms({"failpost": FAILING_POST}).rglob("failpost-*.rpm"))
    answer = apply(str(root), [str(failpost)], [])
    assert not answer["ok"] and answer["problems"] == [] and answer["script_errors"], answer
    assert "failpost" in names(root)


def test_a_malformed_request_exits_2(root):
    proc = subprocess.run(ais_command("agent", "transaction", str(root)), input="[1, 2]", capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "not {" in proc.stderr and "Traceback" not in proc.stderr
