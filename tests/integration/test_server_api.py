"""`ais serve` as a real process on 127.0.0.1 ephemeral ports, over a cache built by the
real `ais rebuild`: plans by name and MAC, packages and host files with Range, headers
pinned by the plan, reports in SQLite, 50 concurrent clients, a table of malformed
requests that must each get a clear 4xx while the server keeps serving, a table of
malformed HTTP sent on raw sockets (each once answered 500, hung, or desynchronised the
connection), the total header deadline, a bound on connections, and what a neighbour
without a token learns by asking for a plan by MAC."""

import hashlib
import json
import os
import select
import socket
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ais.cost import CostModel, save_calibration
from aislab.site import ServeProcess, get_json, rebuild_cache, request, subset_descriptors
from aislab.net import ais_command
from ais.stream.unicast import fetch_header

ROOT = Path(__file__).resolve().parents[2]
MAIL_TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"
DB_TOKEN = "fb9577bf9257dd86cd19d77acdaf07b7"
AUTH = {"Authorization": f"Bearer {MAIL_TOKEN}"}
AUTH_LINE = f"Authorization: Bearer {MAIL_TOKEN}"
DC_NAME, DC_MAC, DC_TOKEN = "dc01-ab-0001", "52:54:00:00:0a:01", "dc01ab0001tokentokentoken0001"
DC_HCD = f"""<?xml version="1.0" encoding="UTF-8"?>
<hcd name="{DC_NAME}" scd="mail" reinstalls="1">
  <mac>{DC_MAC}</mac>
  <token>{DC_TOKEN}</token>
  <file path="/etc/hostname">{DC_NAME}
</file>
</hcd>
"""
PACKAGE = "/v1/packages/setup-2.14.3-1.x86_64.rpm"
STRICT = ("--header-timeout", "1", "--body-timeout", "1", "--max-connections", "32", "--workers", "4")


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("serve")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], ["mail01", "db01"])
    (descriptors / "hcd" / f"{DC_NAME}.xml").write_text(DC_HCD)  # a host name made of hex pairs and dashes
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
        assert "Traceback" not in proc.log()  # every answer above was given on purpose


@pytest.fixture(scope="module")
def strict_server(site, repo_dir):
    """A server with short deadlines and few connections, for the tests that need them."""
    base, descriptors, _ = site
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "strict.sqlite", *STRICT) as proc:
        yield proc
        assert "Traceback" not in proc.log()


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
    report = {"status": "ok", "phase": "done", "image": "abc", "generation": 1, "timings": {"image": 1.5}}
    status, _, body = request(server, "POST", "/v1/hosts/mail01/report", AUTH, json.dumps(report).encode())
    assert status == 201
    row_id = json.loads(body)["stored"]
    with sqlite3.connect(base / "history.sqlite") as db:
        host, status_, image, stored = db.execute(
            "SELECT host, status, image, report FROM reports WHERE id = ?", (row_id,)).fetchone()
    stored = json.loads(stored)  # the checked report: what was sent, absent fields as null
    assert (host, status_, image) == ("mail01", "ok", "abc") and stored == {**stored, **report}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(server, version):
    """busybox nc (the installed system's firstboot report) closes its sending side when its input
    ends; the request is complete by then, so the server must still answer it."""
    body = json.dumps({"status": "up", "image": "abc", "generation": 1}).encode()
    head = f"POST /v1/hosts/mail01/report HTTP/{version}\r\nHost: ais\r\n{AUTH_LINE}\r\n" \
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"201", answer


BAD_REQUESTS = [
    # (method, path, headers, body, status, words in the error)
    ("GET", "/v1/hosts/52:54:00:zz:00:13/plan", AUTH, None, 400, "malformed MAC"),
    ("GET", "/v1/hosts/52:54:00:00:00/plan", AUTH, None, 400, "malformed MAC"),
    ("GET", "/v1/hosts/52:54:00:00:00:99/plan", AUTH, None, 403, "no plan for this MAC address"),
    ("GET", "/v1/hosts/52-54-00-00-00/plan", AUTH, None, 404, "unknown host 52-54-00-00-00"),  # a name, not a MAC
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
    ("POST", "/v1/hosts/mail01/report", AUTH, b"[1, 2]", 400, "Expected `object`"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "great"}', 400, "at `$.status`"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "ok", "colour": "red"}', 400, "unknown field `colour`"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "ok", "timings": {"image": -1}}', 400, "$.timings"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "progress"}', 400, "names its phase"),
    ("POST", "/v1/hosts/mail01/report", AUTH, b'{"status": "progress", "phase": "image", "done": 9, "total": 1}',
     400, "more than total"),
    ("POST", "/v1/hosts/mail01/report", {}, b'{"status": "progress", "phase": "image"}', 403, "Bearer"),
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


def connect(server, timeout: float = 30) -> socket.socket:
    url = urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=timeout)


def raw_exchange(server, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection (a reset after its answer counts as closed)."""
    with connect(server) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read what it said
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
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


# ---------------------------------------------------------------- Range, through the real server

def range_cases():
    """(Range header, If-Range, expected status, slice of the whole or None) for a file of n >= 160 bytes."""
    return [
        (None, None, 200, slice(None)),
        ("bytes=0-0", None, 206, slice(0, 1)),
        ("bytes=0-99", None, 206, slice(0, 100)),
        ("bytes=10-", None, 206, slice(10, None)),
        ("bytes=150-999999999", None, 206, slice(150, None)),  # end clipped to the file
        ("bytes=-10", None, 206, slice(-10, None)),
        ("bytes=-99999999", None, 206, slice(None)),  # suffix longer than the file: all of it
        ("bytes=5-", '"other-version"', 200, slice(None)),  # If-Range of another version: everything
        ("bytes=999999999-", None, 416, None),
        ("bytes=5-3", None, 416, None),  # one range per request, well formed, or 416
        ("bytes=0-1,5-6", None, 416, None),
        ("items=0-5", None, 416, None),
        ("bytes=-", None, 416, None),
        ("bytes=abc", None, 416, None),
        ("bytes=" + "9" * 5000 + "-", None, 416, None),  # once a 500 (int() of 5,000 digits)
        ("bytes=0-" + "9" * 5000, None, 416, None),
    ]


@pytest.mark.parametrize("what", ["package", "host file"])
@pytest.mark.parametrize("rng,if_range,status,part", range_cases(), ids=[f"{c[0]!s:.30} {c[1]} {c[2]}" for c in range_cases()])
def test_ranges(server, site, repo_dir, what, rng, if_range, status, part):
    if what == "package":
        url, auth, whole = PACKAGE, {}, (repo_dir / "RPMS" / "x86_64" / PACKAGE.rsplit("/", 1)[1]).read_bytes()
    else:
        plan = get_json(server, "/v1/hosts/mail01/plan", AUTH)[1]
        entry = next(f for f in plan["files"] if f["path"] == "/etc/ssl/private/site.key")
        url, auth, whole = entry["url"], AUTH, (site[1] / "files" / "mail01" / "site.key").read_bytes()
    assert len(whole) >= 160
    headers = {**auth, **({"Range": rng} if rng else {}), **({"If-Range": if_range} if if_range else {})}
    got, answer, body = request(server, "GET", url, headers)
    assert got == status, body[:200]
    if part is None:
        assert answer["Content-Range"] == f"bytes */{len(whole)}" and json.loads(body)["status"] == 416
    else:
        assert body == whole[part]
    head_status, head_headers, head_body = request(server, "HEAD", url, headers)
    assert head_status == status and head_body == b""


# ---------------------------------------------------------------- malformed HTTP on raw sockets

def http(method: str, path: str, *headers: str, body: bytes = b"", close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: ais", *headers] + (["Connection: close"] if close else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def report(body: bytes, *headers: str, length: str | None = None) -> bytes:
    cl = f"Content-Length: {len(body) if length is None else length}"
    return http("POST", "/v1/hosts/mail01/report", f"Authorization: Bearer {MAIL_TOKEN}", cl, *headers, body=body)


def parse_responses(data: bytes, methods: list[str]) -> tuple[list[tuple[int | None, dict, bytes]], bytes]:
    """Split the bytes a server sent on one connection into responses (HEAD ones have no body).
    Returns the responses and whatever is left over; a left-over means a desynchronised connection."""
    out = []
    for method in methods:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1."):
            out.append((None, {}, data[:80]))
            return out, data
        status = int(lines[0].split()[1])
        headers = {k.strip().lower().decode(): v.strip().decode() for k, v in (line.split(b":", 1) for line in lines[1:])}
        assert "chunked" not in headers.get("transfer-encoding", ""), headers
        length = 0 if method == "HEAD" or status in (204, 304) else int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out, data


NESTED = b'{"status": "ok", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
SMUGGLED = http("GET", "/v1/smuggled", close=False)

RAW_CASES = [
    # (id, server, requests sent back to back on one connection, [(status, words in the JSON error) per answer])
    ("range of 5,000 digits", "server",
     [http("GET", PACKAGE, "Range: bytes=" + "1" * 5000 + "-")], [(416, "range")]),
    ("content-length of 5,000 digits", "server",
     [report(b'{"status": "ok"}', length="1" * 5000)], [(400, "Content-Length")]),
    ("report nested 100,000 deep", "server", [report(NESTED)], [(400, "report is not a valid document")]),
    ("generation 2**70", "server",
     [report(b'{"status": "ok", "generation": %d}' % 2**70)], [(400, "generation")]),
    ("lone surrogate in a string", "server",
     [report(b'{"status": "ok", "message": "\\ud800"}')], [(400, "report is not valid JSON")]),
    ("body shorter than its content-length", "strict_server",
     [report(b'{"status": "ok"', length="100")], [(408, "body")]),
    ("HEAD with an unsatisfiable range keeps the connection in step", "server",
     [http("HEAD", PACKAGE, "Range: bytes=999999999-", close=False), http("GET", "/v1/health")],
     [(416, None), (200, None)]),
    ("duplicate content-length", "server",
     [report(b'{"status": "ok"}', "Content-Length: 0")], [(400, "Content-Length")]),
    ("a body on a GET is a body, not the next request", "server",
     [http("GET", "/v1/health", f"Content-Length: {len(SMUGGLED)}", close=False, body=SMUGGLED),
      http("GET", "/v1/health")], [(200, None), (200, None)]),
]


@pytest.mark.parametrize("which,requests,answers", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_malformed_http_gets_4xx_and_keeps_the_connection_in_step(request_, which, requests, answers):
    server = request_.getfixturevalue(which)
    before = server.log()
    methods = [r.split(b" ", 1)[0].decode() for r in requests]
    responses, left_over = parse_responses(raw_exchange(server, b"".join(requests)), methods)
    assert [r[0] for r in responses] == [status for status, _ in answers], responses
    assert left_over == b"", left_over[:200]
    for (status, words), (_, headers, body) in zip(answers, responses):
        if words is not None:
            error = json.loads(body)
            assert error["status"] == status and words in error["error"], error
            assert headers["content-type"].startswith("application/json")
    assert get_json(server, "/v1/health")[0] == 200  # still serving
    assert "Traceback" not in server.log()[len(before):]


@pytest.fixture()
def request_(request):
    return request


# ---------------------------------------------------------------- deadlines and bounds

def test_slow_header_client_is_closed_at_the_total_deadline(strict_server):
    """One header line every 0.2 s: each read is quick, the request never completes. The server
    (--header-timeout 1) must close the connection; the client gives up after 150 lines (30 s)."""
    with connect(strict_server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: ais\r\n")
        closed = False
        for n in range(150):
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    closed = sock.recv(65536) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    break
            try:
                sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    assert closed, "the server kept a request whose headers never ended"
    assert get_json(strict_server, "/v1/health")[0] == 200


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_sockets_do_not_grow_the_server(strict_server):
    """200 idle sockets against --max-connections 32 --workers 4: a real request is still
    answered, and the server holds at most 32 client sockets and no thread per socket."""
    pid = strict_server.proc.pid
    for _ in range(8):
        assert get_json(strict_server, "/v1/hosts/mail01/plan", AUTH)[0] == 200  # warm: the workers exist
    threads_before, fds_before = proc_status(pid)
    idle = []
    try:
        for n in range(200):
            sock = connect(strict_server)
            if n % 2:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\n")  # half of them start a request and stop
            idle.append(sock)
        status, body = get_json(strict_server, "/v1/health")
        assert status == 200, body
        threads, fds = proc_status(pid)
        assert threads <= threads_before, (threads_before, threads)
        assert fds <= fds_before + 32, (fds_before, fds)
    finally:
        for sock in idle:
            sock.close()


# ---------------------------------------------------------------- host names that look like MACs; MAC probes

def test_host_named_like_hex_pairs_gets_its_plan(server):
    status, plan = get_json(server, f"/v1/hosts/{DC_NAME}/plan", {"Authorization": f"Bearer {DC_TOKEN}"})
    assert status == 200 and plan["host"] == DC_NAME, plan
    status, by_mac = get_json(server, f"/v1/hosts/{DC_MAC}/plan", {"Authorization": f"Bearer {DC_TOKEN}"})
    assert status == 200 and by_mac == plan


MAC_PROBES = [
    # (MAC, headers): a neighbour without the host's token asking for a plan by MAC
    ("52:54:00:00:00:13", {}),  # mail01's MAC
    ("52-54-00-00-00-13", {}),
    ("52:54:00:00:00:13", {"Authorization": "Bearer nope"}),
    ("52:54:00:00:00:13", {"Authorization": f"Bearer {DB_TOKEN}"}),  # another host's token
    (DC_MAC, {}),
    ("52:54:00:00:00:99", {}),  # nobody's MAC
    ("52:54:00:00:00:99", AUTH),
    ("aa-bb-cc-dd-ee-ff", {"Authorization": "Basic eHg6eXk="}),
]


@pytest.mark.parametrize("mac,headers", MAC_PROBES, ids=[f"{m} {h}" for m, h in MAC_PROBES])
def test_plan_by_mac_without_the_token_names_no_host(server, mac, headers):
    reference = request(server, "GET", "/v1/hosts/52:54:00:00:00:99/plan")
    status, _, body = request(server, "GET", f"/v1/hosts/{mac}/plan", headers)
    assert (status, body) == reference[::2]  # the same answer, byte for byte, for known and unknown MACs
    assert status == 403 and not any(name.encode() in body for name in ("mail01", "db01", DC_NAME))


BAD_OPTIONS = [
    # (option, value, words in the message)
    ("--header-timeout", "0", "positive number of seconds"),
    ("--header-timeout", "-1", "positive number of seconds"),
    ("--header-timeout", "nan", "positive number of seconds"),
    ("--body-timeout", "inf", "positive number of seconds"),
    ("--body-timeout", "soon", "positive number of seconds"),
    ("--max-connections", "0", "whole number"),
    ("--max-connections", "1" * 5000, "whole number"),
    ("--workers", "2.5", "whole number"),
]


@pytest.mark.parametrize("option,value,words", BAD_OPTIONS, ids=[f"{o} {v[:10]}" for o, v, _ in BAD_OPTIONS])
def test_bad_limit_options_exit_2(site, repo_dir, tmp_path, option, value, words):
    base, descriptors, _ = site
    proc = subprocess.run(ais_command("serve", "--plain-http", "--descriptors", str(descriptors), "--repo", str(repo_dir),
                                      "--cache", str(base / "cache"), "--history", str(tmp_path / "h.sqlite"),
                                      "--listen", "127.0.0.1:0", "--stream-listen", "127.0.0.1:0",
                                      option, value, "--seconds", "0"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "h.sqlite").exists()  # nothing done


def test_serve_help_documents_the_limits():
    out = subprocess.run(ais_command("serve", "--help"), capture_output=True, text=True, timeout=60).stdout
    for option in ("--header-timeout", "--body-timeout", "--max-connections", "--workers", "--max-report-bytes"):
        assert option in out


def test_expect_100_continue_report(server):
    """curl sends `Expect: 100-continue` with larger bodies: the server says 100 once the token
    and the length are accepted, then takes the body."""
    body = json.dumps({"status": "ok", "message": "x" * 2000}).encode()
    head = report(body, "Expect: 100-continue")[: -len(body)]
    with connect(server) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    (status, _, stored), = parse_responses(answer, ["POST"])[0]
    assert status == 201 and json.loads(stored)["host"] == "mail01"


@pytest.mark.parametrize("headers,status,part", [
    ({"range": "bytes=5-", "if-range": '"other-version"'}, 200, slice(None)),  # header names in any case
    ({"RANGE": "bytes=5-", "IF-RANGE": '"cd"'}, 200, slice(None)),
    ({"range": "bytes=5-", "if-none-match": "*"}, 206, slice(5, None)),  # conditionals by mtime: ignored
    ({"Accept-Encoding": "gzip, br"}, 200, slice(None)),  # never a compressed sibling file
])
def test_package_headers_in_any_case(server, repo_dir, headers, status, part):
    whole = (repo_dir / "RPMS" / "x86_64" / PACKAGE.rsplit("/", 1)[1]).read_bytes()
    got, answer, body = request(server, "GET", PACKAGE, headers)
    assert (got, body) == (status, whole[part]) and answer["ETag"] == f'"{hashlib.sha256(whole).hexdigest()}"'
