"""The bad-descriptor corpus: each case must exit 2 with file:line and a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ais.cli import main
from aislab.net import ais_command

DEMO = Path(__file__).resolve().parents[3] / "descriptors"


def write(rel: str, text: str):
    def mutate(d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return mutate


def replace(rel: str, old: str, new: str):
    def mutate(d: Path) -> None:
        text = (d / rel).read_text()
        assert old in text, f"corpus case out of date: {old!r} not in {rel}"
        (d / rel).write_text(text.replace(old, new, 1))
    return mutate


def remove(rel: str):
    def mutate(d: Path) -> None:
        (d / rel).unlink()
    return mutate


def symlink(rel: str, target: str):
    def mutate(d: Path) -> None:
        os.symlink(target, d / rel)
    return mutate


def hcd(name: str, body: str, scd: str = "web-2") -> str:
    return (f'<?xml version="1.0"?>\n<hcd name="{name}" scd="{scd}">\n'
            f"  <mac>02:00:00:00:00:99</mac>\n{body}</hcd>\n")


XXE = ('<?xml version="1.0"?>\n<!DOCTYPE scd [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
       '<scd name="evil" base="base"><description>&x;</description></scd>\n')
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
          ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
          '<hcd name="lol" scd="web-2"><mac>02:00:00:00:00:98</mac><token>&lol2;</token></hcd>\n')

# (case id, mutation, where the error must point, what it must say)
CASES = [
    ("malformed-xml", write("scd/broken.xml", '<?xml version="1.0"?>\n<scd name="broken"\n'),
     "scd/broken.xml:3", "malformed XML"),
    ("schema-unknown-element", write("scd/odd.xml", '<scd name="odd" base="base">\n  <pkg name="x"/>\n</scd>\n'),
     "scd/odd.xml:", "does not match the SCD schema"),
    ("schema-missing-mac", write("hcd/nomac.xml", '<hcd name="nomac" scd="db">\n</hcd>\n'),
     "hcd/nomac.xml:1", "does not match the HCD schema"),
    ("schema-unknown-transport", replace("hcd/db01.xml", 'scd="db"', 'scd="db" transport="carrier-pigeon"'),
     "hcd/db01.xml:", "does not match the HCD schema"),
    ("unknown-scd", replace("hcd/db01.xml", 'scd="db"', 'scd="db-9"'),
     "hcd/db01.xml:2", "unknown SCD 'db-9'"),
    ("unknown-base", replace("scd/db.xml", 'base="base"', 'base="centos"'),
     "scd/db.xml:2", "unknown installation base 'centos'"),
    ("base-not-a-base", replace("scd/db.xml", 'base="base"', 'base="mail"'),
     "scd/db.xml:2", "not kind=\"base\""),
    ("unknown-extends", replace("scd/web-2.xml", 'extends="web-1"', 'extends="web-0"'),
     "scd/web-2.xml:2", "extends unknown SCD 'web-0'"),
    ("inheritance-cycle", replace("scd/web-1.xml", 'base="base"', 'extends="web-2"'),
     "scd/web-1.xml:2", "inheritance cycle"),
    ("duplicate-host", write("hcd/web01-again.xml", hcd("web01", "")),
     "hcd/web01-again.xml:2", "duplicate host name 'web01'"),
    ("host-named-like-a-mac", write("hcd/mac-named.xml", hcd("52-54-00-00-00-13", "")),
     "hcd/mac-named.xml:2", "written like a MAC address"),
    ("duplicate-mac", replace("hcd/db02.xml", "52:54:00:00:00:07", "52:54:00:00:00:06"),
     "hcd/db02.xml:3", "duplicate MAC address '52:54:00:00:00:06'"),
    ("malformed-mac", replace("hcd/db02.xml", "52:54:00:00:00:07", "52:54:00:00:07"),
     "hcd/db02.xml:3", "malformed MAC address"),
    ("package-not-in-repo", replace("scd/mail.xml", '"dovecot"', '"exim"'),
     "scd/mail.xml:5", "package 'exim' is not in the repository"),
    ("version-not-in-repo", replace("scd/web-2.xml", 'release="2"', 'release="7"'),
     "scd/web-2.xml:4", "version 3.0.1-7 is not in the repository (it has 3.0.1-2, 3.0.1-1)"),
    ("listed-twice", replace("scd/mail.xml", '<package name="dovecot"/>',
                             '<package name="dovecot"/>\n  <package name="dovecot"/>'),
     "scd/mail.xml:6", "listed twice"),
    ("two-versions", replace("scd/base.xml", '<package name="kernel"/>',
                             '<package name="kernel"/>\n  <package name="python3" version="3.11.2" release="1"/>'),
     "scd/desktop-2.xml:4", "two versions of 'python3'"),
    ("relative-host-path", write("hcd/rel.xml", hcd("rel", '  <file path="etc/motd">hi</file>\n')),
     "hcd/rel.xml:4", "is relative"),
    ("dotdot-host-path", write("hcd/dots.xml", hcd("dots", '  <file path="/etc/../../root/x">hi</file>\n')),
     "hcd/dots.xml:4", "contains '..'"),
    ("unnormalised-host-path", write("hcd/slash.xml", hcd("slash", '  <file path="/etc//motd/">hi</file>\n')),
     "hcd/slash.xml:4", "not a normalised file path"),
    ("source-escapes", write("hcd/esc.xml", hcd("esc", '  <file path="/etc/x" source="../../../../etc/passwd"/>\n')),
     "hcd/esc.xml:4", "resolves outside the descriptors repository"),
    ("source-symlink-escapes",
     lambda d: (symlink("files/link", "/etc/passwd")(d),
                write("hcd/sym.xml", hcd("sym", '  <file path="/etc/x" source="files/link"/>\n'))(d)),
     "hcd/sym.xml:4", "resolves outside the descriptors repository"),
    ("source-missing", write("hcd/miss.xml", hcd("miss", '  <file path="/etc/x" source="files/nope"/>\n')),
     "hcd/miss.xml:4", "does not exist"),
    ("xxe", write("scd/evil.xml", XXE), "scd/evil.xml:2", "DOCTYPE/ENTITY declarations are not allowed"),
    ("billion-laughs", write("hcd/lol.xml", LAUGHS), "hcd/lol.xml:2", "DOCTYPE/ENTITY declarations are not allowed"),
    ("base-with-extends", replace("scd/base.xml", 'kind="base"', 'kind="base" extends="db"'),
     "scd/base.xml:2", "cannot have base= or extends="),
    ("schema-unknown-on-change", replace("scd/db.xml", 'base="base"', 'base="base" on-change="sometimes"'),
     "scd/db.xml:", "does not match the SCD schema"),
    ("groups-malformed-xml", write("groups.xml", '<?xml version="1.0"?>\n<groups>\n  <group name="x">\n'),
     "groups.xml:4", "malformed XML"),
    ("groups-schema-no-name", replace("groups.xml", '<group name="office">', "<group>"),
     "groups.xml:6", "does not match the groups.xml schema"),
    ("groups-schema-bad-name", replace("groups.xml", '<group name="office">', '<group name="Office">'),
     "groups.xml:6", "does not match the groups.xml schema"),
    ("schema-bad-group-name", replace("hcd/db01.xml", "<group>rack-a</group>", "<group>Rack A</group>"),
     "hcd/db01.xml:", "does not match the HCD schema"),
    ("unknown-group", replace("hcd/db01.xml", "<group>rack-a</group>", "<group>rack-z</group>"),
     "hcd/db01.xml:5", "unknown group 'rack-z'; declared in groups.xml: office, rack-a, rack-b"),
    ("unknown-group-without-groups-xml", remove("groups.xml"),
     "hcd/db01.xml:5", "unknown group 'rack-a'; declared in groups.xml (there is none): (none)"),
    ("group-named-twice", replace("hcd/db01.xml", "<group>rack-a</group>",
                                  "<group>rack-a</group>\n  <group>rack-a</group>"),
     "hcd/db01.xml:6", "group 'rack-a' is named twice (first at line 5)"),
    ("empty-group", replace("groups.xml", "</groups>", '  <group name="spare">Spare machines.</group>\n</groups>'),
     "groups.xml:7", "empty group 'spare'"),
    ("duplicate-group", replace("groups.xml", "</groups>", '  <group name="rack-a">Again.</group>\n</groups>'),
     "groups.xml:7", "duplicate group 'rack-a' (also at "),
    ("group-all-declared", replace("groups.xml", "</groups>", '  <group name="all">Everything.</group>\n</groups>'),
     "groups.xml:7", "group 'all' is implicit"),
]


CASES_BY_NAME = {case[0]: case for case in CASES}


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    target = tmp_path / "descriptors"
    shutil.copytree(DEMO, target, symlinks=True)
    return target


def validate(descriptors: Path, repo: Path, capsys) -> tuple[int, str]:
    code = main(["validate", "--descriptors", str(descriptors), "--repo", str(repo)])
    return code, capsys.readouterr().err


def test_demo_is_valid(repo_dir, capsys):
    code = main(["validate", "--descriptors", str(DEMO), "--repo", str(repo_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert "ok: 11 SCDs, 22 hosts, 4 groups (with all)" in out


@pytest.mark.parametrize("case, mutate, where, message", CASES, ids=[c[0] for c in CASES])
def test_bad_descriptor(case, mutate, where, message, demo_copy, repo_dir, capsys):
    mutate(demo_copy)
    code, err = validate(demo_copy, repo_dir, capsys)
    assert code == 2, err
    matching = [line for line in err.splitlines() if where in line]
    assert matching, f"no error points at {where}:\n{err}"
    assert any(message in line for line in matching), f"{message!r} not said at {where}:\n{err}"
    assert "Traceback" not in err


def test_every_problem_reported_at_once(demo_copy, repo_dir, capsys):
    by_name = {case[0]: case for case in CASES}
    for name in ("unknown-scd", "malformed-mac", "xxe"):
        by_name[name][1](demo_copy)
    code, err = validate(demo_copy, repo_dir, capsys)
    assert code == 2
    for where in ("hcd/db01.xml:2", "hcd/db02.xml:3", "scd/evil.xml:2"):
        assert where in err


def test_every_group_problem_reported_at_once(demo_copy, repo_dir, capsys):
    for name in ("unknown-group", "empty-group", "schema-unknown-on-change"):
        CASES_BY_NAME[name][1](demo_copy)
    code, err = validate(demo_copy, repo_dir, capsys)
    assert code == 2
    assert "hcd/db01.xml:5: unknown group 'rack-z'" in err
    assert "groups.xml:7: empty group 'spare'" in err
    assert "scd/db.xml:2: does not match the SCD schema" in err


def test_a_refused_hcd_makes_no_group_look_empty(demo_copy, repo_dir, capsys):
    """Every office host's HCD refused: office has no host that was read, but the HCDs'
    own errors are what to fix, not an 'empty group' that is not empty."""
    for host in ("desk01", "desk02", "desk03", "desk04", "dev01", "dev02"):
        (demo_copy / "hcd" / f"{host}.xml").write_text("<hcd")
    code, err = validate(demo_copy, repo_dir, capsys)
    assert code == 2 and "hcd/desk01.xml:1: malformed XML" in err
    assert "empty group" not in err


def test_a_refused_groups_xml_makes_no_group_look_unknown(demo_copy, repo_dir, capsys):
    CASES_BY_NAME["groups-schema-no-name"][1](demo_copy)
    code, err = validate(demo_copy, repo_dir, capsys)
    assert code == 2 and "does not match the groups.xml schema" in err
    assert "unknown group" not in err


def test_unsatisfied_dependency_names_package_and_need(demo_copy, broken_repo, capsys):
    replace("scd/mail.xml", '<package name="dovecot"/>', '<package name="broken"/>')(demo_copy)
    code, err = validate(demo_copy, broken_repo, capsys)
    assert code == 2
    assert "scd/mail.xml:5" in err
    assert "broken-0:1.0-1.x86_64 needs 'libimaginary >= 2'" in err


def test_cli_subprocess_exit_code_and_no_traceback(demo_copy, repo_dir):
    CASES[0][1](demo_copy)
    proc = subprocess.run([*ais_command(), "validate", "--descriptors", str(demo_copy),
                           "--repo", str(repo_dir)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "malformed XML" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_repository_is_bad_input(demo_copy, tmp_path, capsys):
    code, err = validate(demo_copy, tmp_path / "no-repo", capsys)
    assert code == 2 and "make packages" in err
