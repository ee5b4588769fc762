"""aislab.debsite.translate on hand-written control data: versions, relations, maintainer scripts."""

import pytest

from aislab.debsite.index import compare_versions, parse_stanzas
from aislab.debsite.select import satisfies
from aislab.debsite.translate import (Alternative, BadVersion, User, analyse_scripts, merged_path, split_version,
                                      translate_control, translate_relations)

VERSIONS = [
    # Debian version, epoch, version, release, rewritten
    ("2.36-9+deb12u4", 0, "2.36", "9+deb12u4", False),
    ("1:2.3.1-2", 1, "2.3.1", "2", False),
    ("0.5.12", 0, "0.5.12", "0", False),  # native: no revision
    ("4.4.3-P1-2", 0, "4.4.3_P1", "2", True),  # '-' in upstream: split at the LAST '-'
    ("3.1-20221030-2", 0, "3.1_20221030", "2", True),
    ("1:9.18.28-1~deb12u2", 1, "9.18.28", "1~deb12u2", False),
    ("2:8.2.3995-1+deb12u2", 2, "8.2.3995", "1+deb12u2", False),
    ("1.0~rc1+dfsg-3", 0, "1.0~rc1+dfsg", "3", False),
]


@pytest.mark.parametrize("debian, epoch, version, release, rewritten", VERSIONS)
def test_split_version(debian, epoch, version, release, rewritten):
    evr = split_version(debian)
    assert (evr.epoch, evr.version, evr.release, evr.rewritten) == (epoch, version, release, rewritten)


@pytest.mark.parametrize("bad", ["", "-1", "a1.0", "1.0-", "1:", ":1.0", "1.0 2"])
def test_bad_versions_raise(bad):
    with pytest.raises(BadVersion):
        split_version(bad)


RELATIONS = [
    # field value, RPM dependencies
    ("libc6 (>= 2.34)", ["libc6 >= 2.34-0"]),
    ("libc6 (>> 2.36), libc6 (<< 2.37)", ["libc6 > 2.36-0", "libc6 < 2.37-0"]),
    ("perl-base (= 5.36.0-7+deb12u4)", ["perl-base = 5.36.0-7+deb12u4"]),
    ("foo (<= 1:2.0-1)", ["foo <= 1:2.0-1"]),
    ("foo (< 2.0), bar (> 1.0)", ["foo <= 2.0-0", "bar >= 1.0-0"]),  # the obsolete < and > of old Debian
    ("default-mta | mail-transport-agent", ["(default-mta or mail-transport-agent)"]),
    ("awk | mawk (>= 1.3), debconf (>= 0.5) | debconf-2.0",
     ["(awk or mawk >= 1.3-0)", "(debconf >= 0.5-0 or debconf-2.0)"]),
    ("python3:any (>= 3.11), libfoo1:amd64, bar:native", ["python3 >= 3.11-0", "libfoo1", "bar"]),
    ("linux-libc-dev [amd64], libi386 [i386], libnot [!amd64], libany [any]", ["linux-libc-dev", "libany"]),
    ("foo\n  (>= 1.0),\n bar", ["foo >= 1.0-0", "bar"]),  # continuation lines
    ("", []),
]


@pytest.mark.parametrize("value, deps", RELATIONS)
def test_relations(value, deps):
    got, _, lost = translate_relations("Depends", value)
    assert got == deps and lost == []


UNTRANSLATABLE = [
    # field value, the part that is lost, words of the reason
    ("libfoo:i386", "libfoo:i386", "arch qualifier :i386"),
    ("Foo_Bar (>= 1)", "Foo_Bar (>= 1)", "not a Debian relation"),
    ("foo (>= 1.0", "foo (>= 1.0", "not a Debian relation"),
    ("foo (~= 1.0)", "foo (~= 1.0)", "not a Debian relation"),
    ("foo (>= x1)", "foo (>= x1)", "not a Debian version"),
]


@pytest.mark.parametrize("value, text, words", UNTRANSLATABLE)
def test_untranslatable_atoms_are_reported(value, text, words):
    deps, _, lost = translate_relations("Depends", value)
    assert deps == []
    assert [(u.field, u.text) for u in lost] == [("Depends", text)] and words in lost[0].reason


def test_an_untranslatable_alternative_leaves_the_rest_of_its_group():
    deps, _, lost = translate_relations("Depends", "libfoo:i386 | libfoo-compat (>= 2)")
    assert deps == ["libfoo-compat >= 2-0"] and lost[0].text == "libfoo:i386"


CONTROLS = [
    # control fields, expected tags (only the keys given)
    ({"Package": "bash", "Pre-Depends": "libc6 (>= 2.36), libtinfo6 (>= 6)", "Depends": "base-files (>= 2.1.12)"},
     {"requires_pre": ["libc6 >= 2.36-0", "libtinfo6 >= 6-0"], "requires": ["base-files >= 2.1.12-0"]}),
    ({"Package": "postfix", "Provides": "mail-transport-agent, default-mta (= 1.0)",
      "Conflicts": "mail-transport-agent", "Breaks": "postfix-ldap (<< 3.0)"},
     {"provides": ["mail-transport-agent", "default-mta = 1.0-0"],
      "conflicts": ["mail-transport-agent", "postfix-ldap < 3.0-0"]}),
    # Replaces + Breaks on the same name: Debian's package replacement -> Obsoletes
    ({"Package": "libssl3t64", "Breaks": "libssl3 (<< 3.1)", "Replaces": "libssl3 (<< 3.1), foo-doc"},
     {"obsoletes": ["libssl3 < 3.1-0"], "replaces": ["foo-doc"], "conflicts": ["libssl3 < 3.1-0"]}),
    # a Breaks and a Conflicts on one thing give one Conflicts
    ({"Package": "a", "Conflicts": "b", "Breaks": "b"}, {"conflicts": ["b"]}),
    ({"Package": "a", "Replaces": "a (<< 1.0)"}, {"obsoletes": [], "replaces": []}),  # itself: nothing
]


@pytest.mark.parametrize("control, expected", CONTROLS)
def test_control(control, expected):
    tags = translate_control(control)
    for key, value in expected.items():
        assert getattr(tags, key) == value, key
    assert tags.lost == []


def test_versioned_conflicts_on_names_no_package_has_are_left_out_and_said():
    control = {"Package": "perl-base", "Breaks": "perl-modules (<< 5.36.0~), dpkg (<< 1.17)", "Conflicts": "safe-rm"}
    tags = translate_control(control, real_names=frozenset({"perl-base", "dpkg", "safe-rm"}))
    assert tags.conflicts == ["safe-rm", "dpkg < 1.17-0"]
    assert len(tags.notes) == 1 and "perl-modules" in tags.notes[0]


BAD_CONTROL = [
    ({"Package": "x", "Provides": "foo (>= 1.0)"}, "Provides", "foo >= 1.0-0"),
    ({"Package": "x", "Provides": "a | b"}, "Provides", "a | b"),
    ({"Package": "x", "Conflicts": "a | b"}, "Conflicts", "a | b"),
    ({"Package": "x", "Depends": "libx:arm64"}, "Depends", "libx:arm64"),
    ({"Package": "x", "Pre-Depends": "foo (>= )"}, "Pre-Depends", "foo (>= )"),
]


@pytest.mark.parametrize("control, field, text", BAD_CONTROL)
def test_untranslatable_control_is_reported_with_its_field(control, field, text):
    tags = translate_control(control)
    assert [(u.field, u.text) for u in tags.lost] == [(field, text)]


POSTINST_USERS = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd _apt >/dev/null; then
        adduser --force-badname --system --home /nonexistent  \\
            --no-create-home --quiet _apt || true
    fi
    addgroup --system crontab
    adduser --system --group --home /var/lib/postgresql --shell /bin/bash postgres
    useradd -r -g mail -d /var/spool/postfix -s /usr/sbin/nologin postfix
    addgroup --system $quiet ssl-cert
    adduser --system "$DYNAMIC"
    adduser postgres ssl-cert
    deb-systemd-helper enable cron.service >/dev/null || true
fi
#DEBHELPER#
"""


def test_users_and_groups_become_a_pre_scriptlet():
    s = analyse_scripts("x", {"postinst": POSTINST_USERS})
    assert s.users == [User("_apt", "nogroup", "/nonexistent", "/usr/sbin/nologin", False),
                       User("postgres", "postgres", "/var/lib/postgresql", "/bin/bash", True),
                       User("postfix", "mail", "/var/spool/postfix", "/usr/sbin/nologin", False)]
    assert s.groups == ["crontab", "ssl-cert"]
    pre = s.sections["%pre"]
    assert "getent group crontab >/dev/null || groupadd -r crontab" in pre
    assert "useradd -r -M -g nogroup -d /nonexistent -s /usr/sbin/nologin _apt" in pre
    assert "install -d -o postgres -g postgres /var/lib/postgresql" in pre
    assert s.needs["pre"] == ["passwd", "libc-bin", "base-passwd", "coreutils"]
    [(script, why)] = s.dropped
    assert script == "postinst" and "deb-systemd-helper" in why and "system user postgres" in why
    assert [u.text for u in s.lost] == ['adduser --system $DYNAMIC']  # not literal: reported, not guessed


POSTINST_ALTERNATIVES = """#!/bin/sh
set -e
update-alternatives --install /usr/bin/editor editor /bin/nano 40 \\
  --slave /usr/share/man/man1/editor.1.gz editor.1.gz /usr/share/man/man1/nano.1.gz
update-alternatives --install /usr/bin/pico pico /bin/nano 10
update-alternatives --install $BINPATH/w w $BINPATH/w.procps 50
"""


def test_alternatives_become_a_lua_post_with_usr_merged_paths():
    s = analyse_scripts("nano", {"postinst": POSTINST_ALTERNATIVES})
    assert s.alternatives == [
        Alternative("editor", "/usr/bin/editor", "/usr/bin/nano", 40,
                    (("/usr/share/man/man1/editor.1.gz", "editor.1.gz", "/usr/share/man/man1/nano.1.gz"),)),
        Alternative("pico", "/usr/bin/pico", "/usr/bin/nano", 10),
    ]
    post = s.sections["%post -p <lua>"]
    assert 'posix.symlink("/usr/bin/nano", "/etc/alternatives/editor")' in post
    assert 'posix.symlink("/etc/alternatives/editor.1.gz", "/usr/share/man/man1/editor.1.gz")' in post
    assert "40 > prio" in post and "%postun -p <lua>" in s.sections
    assert len(s.lost) == 1 and "$BINPATH" in s.lost[0].text and "not literal" in s.lost[0].reason


SCRIPTS = [
    # scripts, dropped (script, words of why), sections made
    ({"postinst": "#!/bin/sh\nset -e\ndb_get foo/bar\n", "config": ". /usr/share/debconf/confmodule\ndb_input x\n"},
     [("postinst", "debconf"), ("config", "debconf")], []),
    ({"triggers": "activate-noawait ldconfig\n"}, [("triggers", "ldconfig (libc-bin's file trigger)")], []),
    ({"prerm": "#!/bin/sh\ninvoke-rc.d ssh stop\n", "postrm": "#!/bin/sh\nrm -rf /var/lib/foo\n"},
     [("prerm", "nothing runs in an image"), ("postrm", "dpkg-time logic only")], []),
    ({"postinst": "dpkg-maintscript-helper rm_conffile /etc/x 1.0 -- \"$@\"\n"},
     [("postinst", "dpkg conffile moves")], []),
    ({}, [], []),
]


@pytest.mark.parametrize("scripts, dropped, sections", SCRIPTS)
def test_every_maintainer_script_is_dropped_with_a_reason(scripts, dropped, sections):
    s = analyse_scripts("x", scripts)
    assert [d[0] for d in s.dropped] == [d[0] for d in dropped]
    for (_, why), (_, words) in zip(s.dropped, dropped):
        assert words in why
    assert list(s.sections) == sections


def test_a_kernel_runs_depmod_after_the_transaction():
    s = analyse_scripts("linux-image-6.1.0-57-amd64", {"postinst": "depmod -a 6.1.0-57-amd64\n"},
                        kernel_version="6.1.0-57-amd64")
    assert s.sections["%posttrans"] == "depmod -a 6.1.0-57-amd64\n" and s.needs["posttrans"] == ["kmod"]


@pytest.mark.parametrize("path, merged", [("/bin/sh", "/usr/bin/sh"), ("/sbin/ldconfig", "/usr/sbin/ldconfig"),
                                          ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
                                          ("/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"),
                                          ("/usr/bin/awk", "/usr/bin/awk"), ("/binaries/x", "/binaries/x"),
                                          ("/etc/lib/x", "/etc/lib/x")])
def test_merged_path(path, merged):
    assert merged_path(path) == merged


ORDER = [("1.0", "1.0", 0), ("1.0~rc1", "1.0", -1), ("1.0-1", "1.0-1+deb12u1", -1), ("1:0.1", "2.0", 1),
         ("2.36-9", "2.36", 1), ("1.0+b1", "1.0.1", -1), ("1.0a", "1.0", 1), ("3.0.20-1~deb12u2", "3.0.22-1~deb12u2", -1)]


@pytest.mark.parametrize("a, b, sign", ORDER)
def test_debian_version_order(a, b, sign):
    assert compare_versions(a, b) == sign and compare_versions(b, a) == -sign


def test_satisfies_reads_rpm_spelled_relations_as_debian_does():
    assert satisfies("2.36-9", ">", "2.36-0") and not satisfies("2.36-9", "<", "2.36-0")
    assert satisfies("4.4.3-P1-2", ">=", "4.4.3_P1-0")


def test_parse_stanzas_joins_continuations_and_keeps_only_fields():
    text = "Package: a\nVersion: 1\nDepends: b,\n c\nDescription: x\n y\nMD5sum: 00\n\nPackage: b\nVersion: 2\n"
    assert parse_stanzas(text, ("Package", "Version", "Depends")) == [
        {"Package": "a", "Version": "1", "Depends": "b,\n c"}, {"Package": "b", "Version": "2"}]


def test_relations_on_rewritten_versions_are_settled_as_debian_compares():
    """'12-20211113-2~' becomes '12_20211113-2~', which RPM orders above 12.2.0 (Debian: below)."""
    site = {"libtsan2": ["12.2.0-14+deb12u1"], "isc-dhcp-common": ["4.4.3-P1-2"]}
    control = {"Package": "libgcc-12-dev", "Breaks": "libtsan2 (<< 12-20211113-2~)",
               "Depends": "isc-dhcp-common (= 4.4.3-P1-2), libtsan2 (>= 12-20211113-2~), other (>= 1-2-3)"}
    tags = translate_control(control, site_versions=site)
    assert tags.conflicts == []
    assert tags.requires == ["isc-dhcp-common", "libtsan2", "other >= 1_2-3"]
    assert len(tags.notes) == 3 and all("as Debian compares" in n for n in tags.notes)
    assert translate_control(control).conflicts == ["libtsan2 < 12_20211113-2~"]  # without the site: as spelled
