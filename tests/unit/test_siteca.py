"""The site CA (ais.siteca): its files and modes, no overwrite, rotation; server certificates and the
names they carry; what `ais serve` refuses to serve with; the client's context and its words for a
refused handshake. `ais site init --ca` and `ais site cert` as an admin runs them, bad input as a table."""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import stat

import pytest
from cryptography import x509

from ais import siteca
from ais.cli import main
from ais.errors import UsageError
from ais.run import run
from aislab.canned import CannedServer

NOW = datetime.datetime.now(datetime.timezone.utc)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_a_ca_that_signs_server_certificates_only(tmp_path):
    fingerprint, kept = siteca.init(tmp_path)
    assert kept == [] and len(fingerprint) == 64
    assert mode(siteca.ca_key_path(tmp_path)) == 0o600 and mode(siteca.ca_path(tmp_path)) == 0o644
    cert = x509.load_pem_x509_certificate(siteca.ca_path(tmp_path).read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert siteca.fingerprint(cert) == fingerprint


def test_init_refuses_to_replace_and_rotation_keeps_the_old_ca(tmp_path):
    first, _ = siteca.init(tmp_path)
    with pytest.raises(UsageError, match="already has a CA.*--rotate"):
        siteca.init(tmp_path)
    assert siteca.fingerprint(siteca.load_certificate(siteca.ca_path(tmp_path), "ca")) == first
    second, kept = siteca.init(tmp_path, rotate=True)
    assert second != first and sorted(p.name.split(".")[-1] for p in kept) == ["pem", "pem"]
    assert all(p.exists() for p in kept)


def test_a_server_certificate_names_addresses_and_dns_names_and_verifies(tmp_path):
    siteca.init(tmp_path)
    path, until = siteca.issue_server(tmp_path, ["10.0.0.1", "ais.example.org", "::1"], days=30)
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["10.0.0.1", "::1"]
    assert alt.get_values_for_type(x509.DNSName) == ["ais.example.org"]
    assert 29 <= (until - NOW).days <= 30
    assert mode(siteca.server_paths(tmp_path)[1]) == 0o600
    context = siteca.server_context(*siteca.server_paths(tmp_path))
    assert isinstance(context, ssl.SSLContext)
    client = siteca.client_context(siteca.ca_path(tmp_path))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", "AIS site CA"),), (("organizationName", "AIS"),))
    assert len(client.get_ca_certs()) == 1  # no system store: the site CA only


def write(tmp_path, names, start, days):
    ca_cert, ca_key = siteca.load_ca(tmp_path)
    cert, key = siteca.make_certificate(ca_cert, ca_key, names, start, start + datetime.timedelta(days=days))
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    return tmp_path / "c.pem", tmp_path / "k.pem"


def test_serve_refuses_an_expired_certificate_and_warns_before(tmp_path, caplog):
    siteca.init(tmp_path)
    with pytest.raises(UsageError, match="expired on .* `ais site cert"):
        siteca.server_context(*write(tmp_path, ["10.0.0.1"], NOW - datetime.timedelta(days=20), 10))
    siteca.server_context(*write(tmp_path, ["10.0.0.1"], NOW - datetime.timedelta(days=1), 5))
    assert "expires in 3 days" in caplog.text


# (what is wrong, the call, words of the UsageError)
BAD = [
    ("no CA to sign with", lambda p: siteca.issue_server(p / "none", ["10.0.0.1"]), "has no CA"),
    ("no name", lambda p: siteca.issue_server(p, []), "name the server"),
    ("a name with a space", lambda p: siteca.issue_server(p, ["ais server"]), "neither an IP address nor a DNS"),
    ("a name with a slash", lambda p: siteca.issue_server(p, ["10.0.0.1/24"]), "neither an IP address nor a DNS"),
    ("0 days", lambda p: siteca.issue_server(p, ["10.0.0.1"], days=0), "at least 1 day"),
    ("no certificate to serve", lambda p: siteca.server_context(p / "no.pem", p / "no-key.pem"), "no TLS certificate"),
    ("a certificate that is not one", lambda p: siteca.server_context(p / "site" / "ca-key.pem", p / "k"),
     "not a PEM certificate"),
    ("a CA file that does not exist", lambda p: siteca.client_context(p / "missing.pem"), "no such file"),
    ("a CA file that is not a certificate", lambda p: siteca.client_context(p / "site" / "ca-key.pem"),
     "not a PEM certificate"),
]


@pytest.mark.parametrize("case,call,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_usage_error(tmp_path, case, call, words):
    siteca.init(tmp_path)
    with pytest.raises(UsageError, match=words):
        call(tmp_path)


def verification_error(message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    err.verify_message = message
    return err


@pytest.mark.parametrize("message,words", [
    ("unable to get local issuer certificate", "is not signed by the site CA in ca.pem"),
    ("self-signed certificate", "is not signed by the site CA in ca.pem"),
    ("certificate has expired", "has expired"),
    ("IP address mismatch, certificate is not valid for '10.0.0.9'.", "does not name that server"),
])
def test_refusals_say_what_was_wrong(message, words):
    text = siteca.refusal(verification_error(message), "https://10.0.0.9:8470", "ca.pem")
    assert words in text and "https://10.0.0.9:8470" in text and text.endswith("nothing was written")


def test_a_server_that_is_not_tls_is_named_as_such():
    err = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    err.reason = "WRONG_VERSION_NUMBER"
    assert "is it serving HTTPS" in siteca.refusal(err, "https://10.0.0.9:8470", None)


def test_the_cli_makes_a_ca_then_a_certificate(tmp_path, capsys):
    cache = str(tmp_path)
    assert main(["site", "init", "--ca", "--cache", cache]) == 0
    assert len(capsys.readouterr().out.strip()) == 64
    assert main(["site", "init", "--ca", "--cache", cache]) == 2
    assert "already has a CA" in capsys.readouterr().err
    assert main(["site", "cert", "--cache", cache, "--name", "10.0.0.1"]) == 0
    assert capsys.readouterr().out.strip() == str(siteca.server_paths(tmp_path)[0])
    assert main(["site", "cert", "--cache", cache, "--name", "not a name"]) == 2
    assert main(["site", "cert", "--cache", str(tmp_path / "elsewhere"), "--name", "10.0.0.1"]) == 2
    assert "ais site init" in capsys.readouterr().err


def test_the_ca_to_pin_is_the_sites_certificate_or_none(tmp_path):
    assert siteca.read_ca(tmp_path) is None  # a site without a CA: nothing to pin
    siteca.init(tmp_path)
    text = siteca.read_ca(tmp_path)
    assert text == siteca.ca_path(tmp_path).read_text() and text.startswith("-----BEGIN CERTIFICATE-----")


def test_a_ca_file_that_is_not_a_certificate_is_refused(tmp_path):
    siteca.ca_path(tmp_path).parent.mkdir(parents=True)
    siteca.ca_path(tmp_path).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(UsageError, match="ca.pem: not a PEM certificate"):
        siteca.read_ca(tmp_path)


def test_the_server_signs_with_sha256_for_a_client_that_asks_and_speaks_to_busybox_wget(tmp_path):
    """The server allows SHA-1 signatures (security level 0) for busybox wget's TLS, which offers no
    signature algorithms; a client that offers them (OpenSSL's) still gets SHA-256."""
    siteca.init(tmp_path)
    cert, _ = siteca.issue_server(tmp_path, ["127.0.0.1"])
    server = CannedServer(b'{"status": "ok"}', tls=siteca.server_context(cert, siteca.server_paths(tmp_path)[1]))
    port = server.url.rsplit(":", 1)[1]
    try:
        hello = run(["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}",
                     "-CAfile", str(siteca.ca_path(tmp_path)), "-verify_return_error"], input="", timeout=30).stdout
        assert "Peer signing digest: SHA256" in hello and "Verify return code: 0 (ok)" in hello, hello
        busybox = shutil.which("busybox")  # busybox-static 1.35 (the Makefile installs it): its own TLS
        got = run([busybox, "wget", "-q", "-O", "-", f"{server.url}/v1/health"], env={"PATH": "/nonexistent"},
                  timeout=30).stdout
        assert got == '{"status": "ok"}'
    finally:
        server.close()


# (what the cache holds, the words `ais cache status` says of its certificate)
def _expired(p):
    write(p, ["10.0.0.1"], NOW - datetime.timedelta(days=20), 10)
    (p / "c.pem").replace(siteca.server_paths(p)[0])


def _expiring(p):
    write(p, ["10.0.0.1"], NOW - datetime.timedelta(days=1), 5)
    (p / "c.pem").replace(siteca.server_paths(p)[0])


CERT_STATES = [
    ("no certificate", lambda p: None, "no server certificate"),
    ("a good one", lambda p: siteca.issue_server(p, ["10.0.0.1", "ais.example.org"]), None),
    ("expired", lambda p: (siteca.issue_server(p, ["10.0.0.1"]), _expired(p)), "EXPIRED"),
    ("expiring in 3 days", lambda p: (siteca.issue_server(p, ["10.0.0.1"]), _expiring(p)), "expires in 3 days"),
    ("signed by a CA rotated since", lambda p: (siteca.issue_server(p, ["10.0.0.1"]), siteca.init(p, rotate=True)),
     "not signed by the site CA"),
]


@pytest.mark.parametrize("case,make,words", CERT_STATES, ids=[c[0] for c in CERT_STATES])
def test_cache_status_says_what_is_wrong_with_the_certificate(tmp_path, case, make, words):
    from ais.cache.status import tls_line

    siteca.init(tmp_path)
    make(tmp_path)
    status = siteca.certificate_status(tmp_path)
    line = tls_line(status)
    if words is None:
        assert status["problem"] is None and status["names"] == ["10.0.0.1", "ais.example.org"]
        assert line.startswith("tls: server certificate for 10.0.0.1, ais.example.org, valid until ")
    else:
        assert words in status["problem"] and words in line, line
