"""ais.siteca: the CA text a boot environment pins, and who the server's TLS speaks to."""

from __future__ import annotations

import shutil

import pytest

from ais import siteca
from ais.errors import UsageError
from ais.run import run
from aislab.canned import CannedServer


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
        busybox = shutil.which("busybox")
        if busybox:  # busybox-static 1.35: its own TLS when no openssl is on PATH
            got = run([busybox, "wget", "-q", "-O", "-", f"{server.url}/v1/health"], env={"PATH": "/nonexistent"},
                      timeout=30).stdout
            assert got == '{"status": "ok"}'
    finally:
        server.close()
