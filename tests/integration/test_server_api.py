"""`ais serve` as a real process on 127.0.0.1 ephemeral ports, over a cache built by the
real `ais rebuild`: plans by name and MAC, packages and host files with Range, headers
pinned by the plan, reports in SQLite, 50 concurrent clients, and a table of malformed
requests that must each get a clear 4xx while the server keeps serving."""

import hashlib
import json
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ais.planner.cost import CostModel, save_calibration
from ais.server.lab import ServeProcess, get_json, rebuild_cache, request, subset_descriptors
from ais.stream.unicast import fetch_header

ROOT = Path(__file__).resolve().parents[2]
MAIL_TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"
DB_TOKEN = "fb9577bf9257dd86cd19d77acdaf07b7"
AUTH = {"Authorization": f"Bearer {MAIL_TOKEN}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("serve")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], ["mail01", "db01"])
    cost = base / "cost.json"  # imaging measured fast, as `ais calibrate` finds on this machine
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = rebuild_cache(descriptors, repo_dir, base / "cache", cost=cost)
    assert manifest["configurations"]["mail"]["image"] is not None
    return base, descriptors, manifest


@pytest.fixture(scope="module")
def server(site, repo_dir):
    base, descriptors, _ = site
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "history.sqlite") as proc:
        yield proc


def test_plan_by_name_and_mac_agree(server, site):
    _, _, manifest = site
    status, by_name = get_json(server, "/v1/hosts/mail01/plan", AUTH)
    assert status == 200
    status, by_mac = get_json(server, "/v1/hosts/52:54:00:00:00:13/plan", AUTH)
    assert status == 200 and by_mac == by_name
    assert get_json(server, "/v1/hosts/52-54-00-00-00-13/plan", AUTH)[1] == by_name
    assert by_name["image"]["id"] == manifest["configurations"]["mail"]["image"]
    assert by_name["fallback"] is None and by_name["generation"] == manifest["generation"]
    assert set(by_name["image"]["packages"]) | {p["nevra"] for p in by_name["packages"]} == set(by_name["configuration"])


def test_header_is_the_one_the_plan_pins(server):
    plan = get_json(server, "/v1/hosts/mail01/plan", AUTH)[1]
    status, _, body = request(server, "GET", plan["image"]["header_url"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == plan["image"]["header_sha256"]
    assert json.loads(body) == plan["image"]["header"]
    host, port = plan["image"]["stream"]["tcp"].rsplit(":", 1)
    streamed = fetch_header((host, int(port)), plan["image"]["id"], sha256=plan["image"]["header_sha256"])
    assert streamed.image_id == plan["image"]["id"]


def test_packages_whole_and_ranges(server, repo_dir):
    plan = get_json(server, "/v1/hosts/db01/plan", {"Authorization": f"Bearer {DB_TOKEN}"})[1]
    entries = plan["packages"] or [{"filename": "setup-2.14.3-1.x86_64.rpm"}]
    name = entries[0]["filename"]
    whole = (repo_dir / "RPMS" / "x86_64" / name).read_bytes()
    status, headers, body = request(server, "GET", f"/v1/packages/{name}")
    assert status == 200 and body == whole and headers["Accept-Ranges"] == "bytes"
    status, headers, body = request(server, "GET", f"/v1/packages/{name}", {"Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, _, body = request(server, "GET", f"/v1/packages/{name}", {"Range": "bytes=-7"})
    assert status == 206 and body == whole[-7:]
    etag = headers["ETag"]
    assert request(server, "GET", f"/v1/packages/{name}", {"Range": "bytes=5-", "If-Range": etag})[2] == whole[5:]
    status, _, body = request(server, "GET", f"/v1/packages/{name}", {"Range": "bytes=5-", "If-Range": '"other"'})
    assert status == 200 and body == whole
    status, headers, _ = request(server, "GET", f"/v1/packages/{name}", {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    status, headers, body = request(server, "HEAD", f"/v1/packages/{name}")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(whole)


def test_host_files_for_their_host_only(server, site):
    _, descriptors, _ = site
    plan = get_json(server, "/v1/hosts/mail01/plan", AUTH)[1]
    key = next(f for f in plan["files"] if f["path"] == "/etc/ssl/private/site.key")
    status, _, body = request(server, "GET", key["url"], AUTH)
    assert status == 200 and body == (descriptors / "files" / "mail01" / "site.key").read_bytes()
    assert hashlib.sha256(body).hexdigest() == key["sha256"]
    status, _, part = request(server, "GET", key["url"], {**AUTH, "Range": "bytes=10-"})
    assert status == 206 and part == body[10:]
    status, err = get_json(server, key["url"], {"Authorization": f"Bearer {DB_TOKEN}"})
    assert status == 403 and err["error"] == "host mail01: wrong token"


def test_report_goes_to_history(server, site):
    base, _, _ = site
    report = {"status": "ok", "phase": "done", "image": {"id": "abc"}, "generation": 1,
              "timings": {"image": 1.5}}
    status, _, body = request(server, "POST", "/v1/hosts/mail01/report", AUTH, json.dumps(report).encode())
    assert status == 201
    row_id = json.loads(body)["stored"]
    with sqlite3.connect(base / "history.sqlite") as db:
        host, status_, image, stored = db.execute(
            "SELECT host, status, image, report FROM reports WHERE id = ?", (row_id,)).fetchone()
    assert (host, status_, image) == ("mail01", "ok", "abc") and json.loads(stored) == report


BAD_REQUESTS = [
    # (method, path, headers, body, status, words in the error)
    ("GET", "/v1/hosts/52:54:00:zz:00:13/plan", AUTH, None, 400, "malformed MAC"),
    ("GET", "/v1/hosts/52:54:00:00:00/plan", AUTH, None, 400, "malformed MAC"),
    ("GET", "/v1/hosts/52:54:00:00:00:99/plan", AUTH, None, 404, "no host with MAC 52:54:00:00:00:99"),
    ("GET", "/v1/hosts/nosuch01/plan", AUTH, None, 404, "unknown host nosuch01"),
    ("GET", "/v1/hosts/bad%20name/plan", AUTH, None, 400, "malformed host name"),
    ("GET", "/v1/hosts/mail01/plan", {}, None, 403, "Authorization: Bearer"),
    ("GET", "/v1/hosts/mail01/plan", {"Authorization": "Basic eHg6eXk="}, None, 403, "Bearer"),
    ("GET", "/v1/hosts/mail01/plan", {"Authorization": "Bearer nope"}, None, 403, "wrong token"),
    ("GET", "/v1/hosts/mail01/files/0", {}, None, 403, "Bearer"),
    ("GET", "/v1/hosts/mail01/files/99", AUTH, None, 404, "there is no file 99"),
    ("GET", "/v1/hosts/mail01/files/x", AUTH, None, 400, "must be a number"),
    ("GET", "/v1/hosts/52:54:00:00:00:13/files/0", AUTH, None, 400, "host name, not a MAC"),
    ("GET", "/v1/packages/../../etc/passwd", {}, None, 404, "no such resource"),
    ("GET", "/v1/packages/..%2F..%2Fetc%2Fpasswd", {}, None, 400, "encoded '/'"),
    ("GET", "/v1/packages/%2e%2e", {}, None, 400, "not an RPM file name"),
    ("GET", "/v1/packages/..rpm", {}, None, 400, "not an RPM file name"),
    ("GET", "/v1/packages/passwd", {}, None, 400, "not an RPM file name"),
    ("GET", "/v1/packages/nosuch-1-1.x86_64.rpm", {}, None, 404, "not in the repository"),
    ("GET", "/v1/images/xyz/header", {}, None, 400, "64 lower-case hex"),
    ("GET", "/v1/images/" + "a" * 64 + "/header", {}, None, 404, "not in the published manifest"),
    ("GET", "/v1/nothing", {}, None, 404, "no such resource"),
    ("GET", "/etc/passwd", {}, None, 404, "under /v1/"),
    ("DELETE", "/v1/hosts/mail01/plan", AUTH, None, 405, "not allowed"),
    ("POST", "/v1/hosts/mail01/plan", AUTH, b"{}", 405, "not allowed"),
    ("GET", "/v1/hosts/mail01/report", AUTH, None, 405, "use POST"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b"{not json", 400, "not valid JSON"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b"[1, 2]", 400, "JSON object"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "great"}', 400, "status must be"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/v1/hosts/mail01/report", {}, b'{"status": "ok"}', 403, "Bearer"),
    ("POST", "/v1/hosts/nosuch01/report", AUTH, b'{"status": "ok"}', 404, "unknown host"),
    ("POST", "/v1/hosts/mail01/report", {**AUTH, "Content-Length": "abc"}, None, 400, "Content-Length"),
]


@pytest.mark.parametrize("method,path,headers,body,status,words", BAD_REQUESTS,
                         ids=[f"{m} {p[:40]} {s}" for m, p, _, _, s, _ in BAD_REQUESTS])
def test_malformed_requests_get_clear_4xx(server, method, path, headers, body, status, words):
    got, _, raw = request(server, method, path, headers, body)
    error = json.loads(raw)
    assert got == status and error["status"] == status and words in error["error"], error
    assert get_json(server, "/v1/health")[0] == 200  # still serving


def raw_exchange(server, data: bytes) -> bytes:
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_huge_report_is_refused_without_reading_it(server):
    head = (f"POST /v1/hosts/mail01/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MAIL_TOKEN}\r\n"
            f"Content-Length: {10**12}\r\n\r\n{{\"status\"").encode()
    answer = raw_exchange(server, head)  # the server answers and closes without waiting for 1 TB
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than the limit" in answer


def test_missing_content_length_and_chunked(server):
    base = f"POST /v1/hosts/mail01/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MAIL_TOKEN}\r\n"
    assert raw_exchange(server, (base + "Connection: close\r\n\r\n").encode()).startswith(b"HTTP/1.1 411")
    chunked = base + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert raw_exchange(server, chunked.encode()).startswith(b"HTTP/1.1 411")


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02 garbage\r\n\r\n", b"GET\r\n\r\n",
                                     b"GET /v1/health HTTP/9.9\r\n\r\n", b"GET " + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"])
def test_garbage_request_lines(server, garbage):
    answer = raw_exchange(server, garbage)
    assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 414", b"HTTP/1.1 505", b"HTTP/1.0 400", b"HTTP/1.0 414",
                           b"HTTP/1.0 505"), answer[:100]
    assert get_json(server, "/v1/health")[0] == 200


def test_fifty_concurrent_clients(server):
    hosts = [("mail01", MAIL_TOKEN), ("db01", DB_TOKEN)]

    def one_client(n):
        name, token = hosts[n % 2]
        headers = {"Authorization": f"Bearer {token}"}
        status, plan = get_json(server, f"/v1/hosts/{name}/plan", headers)
        assert status == 200, plan
        fetched = 0
        for pkg in plan["packages"] + [{"url": "/v1/packages/setup-2.14.3-1.x86_64.rpm", "sha256": None}]:
            status, _, body = request(server, "GET", pkg["url"])
            assert status == 200
            assert pkg["sha256"] in (None, hashlib.sha256(body).hexdigest())
            fetched += 1
        for f in plan["files"]:
            status, _, body = request(server, "GET", f["url"], headers)
            assert status == 200 and hashlib.sha256(body).hexdigest() == f["sha256"]
        return fetched

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one_client, range(50)))
    assert len(results) == 50 and all(r >= 1 for r in results)


def test_one_log_line_per_request(server):
    before = server.log().count("\n")
    for _ in range(3):
        request(server, "GET", "/v1/health")
    request(server, "GET", "/v1/hosts/nosuch01/plan")
    # The server logs after it has answered: wait (bounded) for the last line to land.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(server.log().splitlines()[before:]) < 4:
        time.sleep(0.05)
    lines = server.log().splitlines()[before:]
    assert sum('"GET /v1/health" 200' in line for line in lines) == 3
    assert sum('"GET /v1/hosts/nosuch01/plan" 404' in line for line in lines) == 1
