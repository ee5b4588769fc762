"""Client faults with real processes: the server unreachable at start, killed mid-image or
mid-RPM download, a tampered RPM or host file on the wire, an unknown host. Every one must
end in a clean failure: exit 1, a readable console message naming the phase, a "failed"
report when the server can still be told, and never a success report."""

import http.client
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aislab.disks import LoopDisk, Mounted, reinstall_argv
from ais.cost import CostModel, save_calibration
from ais.rpmenv import installed_nevras
from ais.run import run, start
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "db01": "fb9577bf9257dd86cd19d77acdaf07b7"}
FAST_RETRIES = ["--retries", "2", "--retry-delay", "0.1"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("faults")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], ["mail01", "db01"])
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    return base, descriptors, manifest


@pytest.fixture()
def server(site, repo_dir, tmp_path):
    base, descriptors, _ = site
    proc = ServeProcess(descriptors, repo_dir, base / "cache", tmp_path / "history.sqlite")
    yield proc
    proc.stop()


@pytest.fixture()
def disk(tmp_path):
    with LoopDisk(tmp_path / "disk.img", 512) as d:
        yield d


def statuses(history: Path, host: str) -> list[str]:
    with sqlite3.connect(history) as db:
        return [r[0] for r in db.execute("SELECT status FROM reports WHERE host = ? ORDER BY id", (host,))]


def test_server_unreachable_at_start(disk, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    proc = run(reinstall_argv(f"http://127.0.0.1:{port}", "mail01", TOKENS["mail01"], disk.device, tmp_path / "st",
                              "--retries", "3", "--retry-delay", "0.05"), check=False, timeout=60)
    assert proc.returncode == 1
    assert f"cannot reach the AIS server at http://127.0.0.1:{port} after 3 attempts" in proc.stderr
    assert "REINSTALL FAILED in phase 'plan'" in proc.stderr and "could NOT tell the server" in proc.stderr
    assert time.monotonic() - started < 60  # bounded: it gave up rather than hanging


def test_unknown_host(server, disk, tmp_path):
    proc = run(reinstall_argv(server.url, "nosuch01", "x", disk.device, tmp_path / "st", *FAST_RETRIES),
               check=False, timeout=60)
    assert proc.returncode == 1
    assert "unknown host nosuch01: no HCD names it" in proc.stderr


def test_wrong_token(server, disk, tmp_path):
    proc = run(reinstall_argv(server.url, "mail01", "not-the-token", disk.device, tmp_path / "st", *FAST_RETRIES),
               check=False, timeout=60)
    assert proc.returncode == 1 and "host mail01: wrong token" in proc.stderr


@pytest.mark.parametrize("pause_at,phase", [("image-first-chunk", "image"), ("client-rpm", "install")])
def test_server_killed_mid_transfer(server, disk, tmp_path, pause_at, phase):
    marker = tmp_path / "paused"
    env = {"AIS_TEST_PAUSE_AT": pause_at, "AIS_TEST_PAUSE_FILE": str(marker)}
    client = start(reinstall_argv(server.url, "mail01", TOKENS["mail01"], disk.device, tmp_path / "st",
                                  *FAST_RETRIES), env=env)
    assert wait_for(marker.exists, timeout=60), client.communicate()
    server.kill()  # SIGKILL while the client stands between two chunks / before its RPMs
    marker.unlink()  # now let the client go on, into a server that is gone
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 1, stderr
    assert f"REINSTALL FAILED in phase '{phase}'" in stderr
    assert "could NOT tell the server" in stderr
    assert "ok" not in statuses(server_history(server), "mail01")  # never a success report


def server_history(server) -> Path:
    return Path(server.log_path).with_suffix(".sqlite")


class TamperingProxy:
    """An HTTP proxy in front of the server that flips one byte of the bodies of matching paths."""

    def __init__(self, upstream: str, tamper_path: str):
        url = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(method, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if tamper_path in self.path and data:
                    data = bytes([data[0] ^ 0x01]) + data[1:]
                    proxy.tampered += 1
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.tampered = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("path,phase", [("/v1/packages/postfix-", "install"), ("/v1/hosts/mail01/files/2", "files")])
def test_tampered_download_is_refused(server, site, disk, tmp_path, path, phase):
    _, _, manifest = site
    proxy = TamperingProxy(server.url, path)
    try:
        proc = run(reinstall_argv(proxy.url, "mail01", TOKENS["mail01"], disk.device, tmp_path / "st", *FAST_RETRIES),
                   check=False, timeout=120)
    finally:
        proxy.close()
    assert proc.returncode == 1 and proxy.tampered >= 1
    assert f"REINSTALL FAILED in phase '{phase}'" in proc.stderr
    assert "does not match the plan's" in proc.stderr and "refusing to use it" in proc.stderr
    assert statuses(server_history(server), "mail01") == ["failed"]  # told, as a failure
    base_set = set(manifest["images"][manifest["configurations"]["mail"]["image"]]["packages"])
    with Mounted(disk.device) as root:
        if phase == "install":  # nothing of the remainder was installed
            assert installed_nevras(root) == base_set
        else:  # the tampered file was never written
            assert not (root / "etc/ssl/private/site.key").exists()
