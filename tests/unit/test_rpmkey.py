"""The site's RPM signing key (ais.rpmkey, `ais site init`) and how rpm's signature refusals read.

`ais site init` makes both keys; on a site with both it refuses (exit 2); on a site made before RPMs
were signed (a site key, no RPM key) it refuses and points at `--rpm-key`, which makes only the RPM
key; `--rotate` keeps the old public files. rpm 4.18's refusal lines (captured from this machine's
rpm) become one message naming each package and the reason.
"""

import os
import stat

import pytest

from ais import rpmkey, sitekey
from ais.cli import main
from ais.rpmenv import SignatureRefused, _raise_refused


def test_init_makes_the_key_in_a_private_gnupg_home_and_exports_its_public_half(tmp_path):
    fpr, kept = rpmkey.init(tmp_path)
    assert kept == [] and len(fpr) == 40
    assert stat.S_IMODE(os.stat(rpmkey.gnupg_dir(tmp_path)).st_mode) == 0o700
    assert rpmkey.read_public(tmp_path).startswith(rpmkey.ARMOR)
    assert rpmkey.fingerprint(tmp_path) == fpr
    with pytest.raises(Exception, match="already has an RPM signing key"):
        rpmkey.init(tmp_path)
    new, kept = rpmkey.init(tmp_path, rotate=True)
    assert new != fpr and rpmkey.fingerprint(tmp_path) == new
    assert [p.name for p in kept] == [p.name for p in (tmp_path / "site").glob("rpm-key.*.asc")]


def test_a_site_without_an_rpm_key_cannot_sign(tmp_path):
    with pytest.raises(Exception, match="has no RPM signing key .*ais site init"):
        rpmkey.fingerprint(tmp_path)
    (tmp_path / "site").mkdir()
    rpmkey.public_path(tmp_path).write_text("not a key\n")
    with pytest.raises(Exception, match="not an armored OpenPGP public key"):
        rpmkey.read_public(tmp_path)


# (what the site has before, argv after `site init`, exit code, words, RPM key afterwards)
INIT_CASES = [
    ("nothing", [], 0, "", True),
    ("both keys", [], 2, "already has a key", True),
    ("site key only", [], 2, "ais site init --rpm-key", False),
    ("site key only", ["--rpm-key"], 0, "sign-rpms", True),
    ("both keys", ["--rpm-key"], 2, "already has an RPM signing key", True),
    ("both keys", ["--rotate"], 0, "old key is kept", True),
]


@pytest.mark.parametrize("before, argv, code, words, has_rpm_key", INIT_CASES,
                         ids=[f"{c[0]} {' '.join(c[1])}" for c in INIT_CASES])
def test_site_init_table(before, argv, code, words, has_rpm_key, tmp_path, capsys):
    if before != "nothing":
        sitekey.init(tmp_path)
    if before == "both keys":
        rpmkey.init(tmp_path)
    public_before = sitekey.read_public(tmp_path)
    assert main(["site", "init", "--cache", str(tmp_path), *argv]) == code
    assert words in capsys.readouterr().err
    assert rpmkey.public_path(tmp_path).exists() == has_rpm_key
    if "--rpm-key" in argv or code == 2:
        assert sitekey.read_public(tmp_path) == public_before  # the site key is untouched


# rpm 4.18's words (stderr of `rpm -i` with _pkgverify_level signature), and what the client says
REFUSALS = [
    ("\tpackage postfix-3.7.5-1.x86_64 does not verify: no signature\n",
     "postfix-3.7.5-1.x86_64: not signed (no signature at all"),
    ("warning: /s/postfix.rpm: Header V4 RSA/SHA512 Signature, key ID d2e7ca4d: NOKEY\n"
     "\tpackage postfix-3.7.5-1.x86_64 does not verify: Header V4 RSA/SHA512 Signature, key ID d2e7ca4d: NOKEY\n",
     "postfix-3.7.5-1.x86_64: not signed by the site's key (Header V4 RSA/SHA512 Signature, key ID d2e7ca4d: NOKEY)"),
    ("error: /s/postfix-3.7.5-1.x86_64.rpm: Header V4 RSA/SHA512 Signature, key ID aaa0ba7f: BAD\n"
     "error: /s/postfix-3.7.5-1.x86_64.rpm cannot be installed\n",
     "postfix-3.7.5-1.x86_64.rpm: bad signature (Header V4 RSA/SHA512 Signature, key ID aaa0ba7f does not match"),
]


@pytest.mark.parametrize("stderr, words", REFUSALS, ids=["unsigned", "another key", "damaged signature"])
def test_rpm_refusals_name_the_package_and_the_reason(stderr, words):
    with pytest.raises(SignatureRefused) as err:
        _raise_refused(stderr, ["/s/postfix-3.7.5-1.x86_64.rpm"])
    assert words in str(err.value) and "installed none of the transaction" in str(err.value)


def test_other_rpm_failures_are_not_called_signature_refusals():
    _raise_refused("error: Failed dependencies:\n\tlibc is needed by postfix-3.7.5-1.x86_64\n", [])


# ------------------------------------------------------------------ an RPM's header, without its payload

def test_header_length_ends_where_the_header_does(repo_dir):
    from ais.rpmenv import header_length

    rpm_file = next((repo_dir / "RPMS" / "x86_64").glob("logrotate-*.rpm"))
    data = rpm_file.read_bytes()
    length = header_length(data)
    assert 96 < length < len(data)
    assert header_length(data[:length]) == length  # the prefix alone is enough to tell
    assert header_length(data[:100]) is None and header_length(b"") is None
    payload_magic = data[length:length + 4]  # what follows the header is the compressed payload
    assert payload_magic in (b"\x28\xb5\x2f\xfd", b"\x1f\x8b\x08\x00"[:4], b"\xfd7zX")


@pytest.mark.parametrize("prefix,words", [
    (b"\x7fELF" + b"\0" * 200, "no RPM lead"),
    (b"\xed\xab\xee\xdb" + b"\0" * 200, "no signature header at byte 96"),
    (b"\xed\xab\xee\xdb" + b"\0" * 92 + b"\x8e\xad\xe8\x01" + b"\0" * 4 + b"\xff" * 8 + b"\0" * 64,
     "a signature header of"),
])
def test_header_length_refuses_what_is_not_an_rpm(prefix, words):
    from ais.rpmenv import header_length

    with pytest.raises(ValueError, match=words):
        header_length(prefix)
