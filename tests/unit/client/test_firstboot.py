"""The installed system's first-boot report (ais/client/firstboot.sh's report_up), run on this host
against a canned server with the settings `ais client record` writes: over https:// with curl and the
site CA (another CA is refused), with busybox wget when there is no curl (its own TLS, which does
not check the certificate: said on the console), and over http:// with busybox nc."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ais import siteca
from ais.client.reboot import FIRSTBOOT_CA, FIRSTBOOT_CONF, write_firstboot
from ais.client.session import Session
from ais.run import run
from aislab.canned import CannedServer

FIRSTBOOT = Path(__file__).resolve().parents[3] / "ais" / "client" / "firstboot.sh"
BUSYBOX = shutil.which("busybox", path="/usr/bin:/bin")
TOKEN = "fb9577bf9257dd86cd19d77acdaf07b7"
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="no busybox on this host (busybox-static)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    cache = tmp_path_factory.mktemp("site")
    siteca.init(cache)
    cert, key = siteca.issue_server(cache, ["127.0.0.1"]), siteca.server_paths(cache)[1]
    other = tmp_path_factory.mktemp("other-site")
    siteca.init(other)
    return {"context": siteca.server_context(cert[0], key), "ca": siteca.ca_path(cache),
            "other_ca": siteca.ca_path(other)}


def report_up(tmp_path, server: CannedServer, tools: list[str], ca: Path | None) -> str:
    """Write the target's firstboot settings as the record step does, then run firstboot's report_up
    on this host with only `tools` on PATH; its console lines."""
    root = tmp_path / "root"
    session = Session(state_dir=str(tmp_path / "state"), server=server.url, token=TOKEN, target="/dev/vda",
                      site_ca=str(ca) if ca else None, plan={"host": "db01", "generation": 7, "image": {"id": "img-1"}})
    write_firstboot(str(root), session)
    conf = root / FIRSTBOOT_CONF.lstrip("/")
    # the settings name the CA where the installed system has it; here it is under root
    conf.write_text(conf.read_text().replace(f"SITE_CA={FIRSTBOOT_CA}", f"SITE_CA={root}{FIRSTBOOT_CA}"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(BUSYBOX, bin_dir / "cut")
    for tool in tools:
        os.symlink(shutil.which(tool), bin_dir / tool)
    # busybox with no pauses between tries (the script sleeps 2 s between its 5)
    (bin_dir / "bb").write_text(f'#!/bin/sh\n[ "$1" = sleep ] && exit 0\nexec {BUSYBOX} "$@"\n')
    (bin_dir / "bb").chmod(0o755)
    functions = FIRSTBOOT.read_text().split("\ncase ${1:-} in\n", 1)[0]  # everything before the boot itself
    script = (f'{functions}\nPATH={bin_dir}\nBB={bin_dir}/bb\nCONF={conf}\n'
              'say() { echo "firstboot: $*"; }\nreport_up; echo "report_up exit $?"\n')
    return run(["sh", "-c", script], timeout=120).stdout


def assert_stored(server: CannedServer, out: str) -> None:
    assert 'firstboot: report_up: the server stored "up" for db01' in out and "report_up exit 0" in out, out
    [(path, headers, body)] = server.posted
    assert path == "/v1/hosts/db01/report" and headers["Authorization"] == f"Bearer {TOKEN}"
    report = json.loads(body)
    assert (report["status"], report["image"], report["generation"]) == ("up", "img-1", 7)
    assert [p["name"] for p in report["phases"]] == ["up"] and report["phases"][0]["start"] <= report["phases"][0]["end"]


@pytest.fixture()
def tls_server(site):
    server = CannedServer(tls=site["context"], post_body=b'{"stored": 12, "host": "db01"}')
    yield server
    server.close()


def test_https_with_curl_trusts_the_site_ca(tmp_path, site, tls_server):
    out = report_up(tmp_path, tls_server, ["curl"], site["ca"])
    assert_stored(tls_server, out)
    assert "busybox wget" not in out


def test_https_with_curl_refuses_a_server_another_ca_signed(tmp_path, site, tls_server):
    out = report_up(tmp_path, tls_server, ["curl"], site["other_ca"])
    assert "firstboot: report_up: the server did not take the report: curl: (60)" in out, out
    assert "report_up exit 1" in out and tls_server.posted == []


def test_https_without_curl_posts_with_busybox_wget_and_says_it_does_not_check(tmp_path, site, tls_server):
    out = report_up(tmp_path, tls_server, [], site["ca"])
    assert "firstboot: report_up: busybox wget does not check the server's certificate" in out, out
    assert_stored(tls_server, out)


def test_busybox_wget_takes_only_a_stored_report(tmp_path, site):
    server = CannedServer(tls=site["context"], post_status=403, post_body=b'{"error": "wrong token"}')
    try:
        out = report_up(tmp_path, server, [], site["ca"])
    finally:
        server.close()
    assert "report_up: the server did not take the report: wget: server returned error: HTTP/1.0 403" in out, out
    assert "report_up exit 1" in out and len(server.posted) == 5  # tried 5 times


def test_plain_http_posts_with_busybox_nc(tmp_path):
    server = CannedServer(post_body=b'{"stored": 3, "host": "db01"}')
    try:
        out = report_up(tmp_path, server, [], None)
    finally:
        server.close()
    assert_stored(server, out)
    assert "wget" not in out
