"""The chain transport with real clients: a real `ais serve` in one network namespace, clients in
others on the same bridge (links shaped with tc), each a process (tests/integration/chain_peer.py)
that gets its plan, joins the chain through POST /v1/hosts/<name>/chain and writes the image onto a
file with `ChainSource` and `write_image`. Every client's file must equal the image as
`ais image write` writes it from the cache.

- five clients in one chain: the server sends the image once (its own byte count), every other
  client gets it from the one before it;
- a client in the middle killed (SIGKILL) mid-transfer: the others finish, the one after it asked
  the server again and followed the one before it (its stats, the server's log); a neighbour that
  connects to a client without the chain's key is refused and gets no chunk;
- a client that flips a byte in what it forwards: the one after it detects it by the sha256, drops
  it, and still writes exactly the image; nothing wrong is written anywhere;
- the route's checks: token, malformed bodies (table), unknown image.

Nothing waits on the clock: the clients start together on a line the test sends, the one that is
killed stops itself after its first chunks and says so, and the test waits on those printed events.
"""

import filecmp
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from aislab.lines import next_line
from aislab.net import NetLab, ais_command
from aislab.site import ServeProcess, publish_base_cache, request, subset_descriptors
from ais.run import run
from ais.stream.format import read_header

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("chain_peer.py")
CLIENTS = {f"chain{i:02d}": f"c4a1{i:02d}0000000000000000000000{i:02d}" for i in range(1, 6)}
EVENT_TIMEOUT = 120  # a safety net against a hung test, never a moment the test relies on
HCD = """<?xml version="1.0" encoding="UTF-8"?>
<hcd name="{name}" scd="db" reinstalls="1">
  <mac>52:54:00:00:c4:{n:02x}</mac>
  <token>{token}</token>
  <file path="/etc/hostname">{name}
</file>
</hcd>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("chain")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["db"], ["db01"])
    for n, (name, token) in enumerate(CLIENTS.items(), 1):
        (descriptors / "hcd" / f"{name}.xml").write_text(HCD.format(name=name, token=token, n=n))
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache")
    image = manifest["configurations"]["db"]["image"]
    path = base / "cache" / "images" / f"{image}.aisimg"
    reference = base / "reference.img"
    run([*ais_command("image", "write", str(path), str(reference), "--create-file")])
    return {"base": base, "descriptors": descriptors, "image": image, "path": path, "reference": reference,
            "header": read_header(path)}


class Server:
    """`ais serve` in host 0 of the lab, its log in a file."""

    def __init__(self, lab, site, repo_dir, log_path: Path, gather: str):
        address = lab.address(0)
        self.log_path = log_path
        self.log = open(log_path, "w")
        argv = [*ais_command(), "serve", "--plain-http", "--descriptors", str(site["descriptors"]), "--repo", str(repo_dir),
                "--cache", str(site["base"] / "cache"), "--history", str(log_path.with_suffix(".sqlite")),
                "--listen", f"{address}:0", "--stream-listen", f"{address}:0", "--chain-gather", gather]
        self.proc = lab.spawn(0, argv, stderr=self.log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
        line = next_line(self.proc.stdout, 30)
        assert line.startswith('{"listening"'), f"ais serve did not start: {line!r}\n{log_path.read_text()}"
        self.url = json.loads(line)["listening"]["url"]

    def stop(self) -> dict:
        """Stop it; the streamer's statistics it logged."""
        self.proc.terminate()
        self.proc.communicate(timeout=30)
        self.log.close()
        text = self.log_path.read_text()
        assert self.proc.returncode == 0 and "Traceback" not in text, text[-3000:]
        return json.loads(re.findall(r"stream statistics: (\{.*\})", text)[-1])


def event(proc, wanted) -> dict:
    """The next JSON line from proc for which wanted(obj) is true."""
    while True:
        line = next_line(proc.stdout, EVENT_TIMEOUT)
        assert line, f"no such event: the peer exited with {proc.poll()}"
        obj = json.loads(line)
        if wanted(obj):
            return obj


def start_clients(lab, server, tmp_path, names, *options):
    """One driver per name in hosts 1.. of the lab; each told to go once all listen. Returns
    {name: (process, target, listen address)}."""
    clients = {}
    for i, name in enumerate(names, 1):
        target = tmp_path / f"{name}.img"
        proc = lab.spawn(i, [sys.executable, str(PEER), "drive", server.url, name, CLIENTS[name], str(target),
                             *options], env={"PEER_ADDRESS": lab.address(i)}, stdin=-1)
        clients[name] = (proc, target, None)
    for name, (proc, target, _) in clients.items():
        clients[name] = (proc, target, event(proc, lambda o: "listen" in o)["listen"])
    for proc, _, _ in clients.values():
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return clients


def positions(clients) -> dict[int, str]:
    """position -> name, from each client's first answer."""
    return {event(proc, lambda o: "position" in o)["position"]: name for name, (proc, _, _) in clients.items()}


def finished(proc) -> dict:
    done = event(proc, lambda o: "done" in o)
    proc.communicate(timeout=EVENT_TIMEOUT)
    assert proc.returncode == 0
    return done


def lab_for(n: int, tag: str) -> NetLab:
    lab = NetLab(n, tag=f"{tag}{os.getpid() % 10000}", rate="1gbit")
    return lab


def test_five_clients_one_chain_the_server_sends_the_image_once(site, repo_dir, tmp_path):
    names = list(CLIENTS)
    with lab_for(len(names) + 1, "ach") as lab:
        lab.shape(0, "200mbit")  # the server's uplink is the narrow one
        server = Server(lab, site, repo_dir, tmp_path / "serve.log", gather="5")
        clients = start_clients(lab, server, tmp_path, names)
        order = positions(clients)
        done = {name: finished(clients[name][0]) for name in names}
        stats = server.stop()
    assert sorted(order) == list(range(len(names)))
    for name, (_, target, _) in clients.items():
        assert filecmp.cmp(site["reference"], target, shallow=False), name
    head, *others = [done[order[p]]["stats"] for p in range(len(names))]
    chunks = len(site["header"].chunks)
    assert head["head_chunks"] == chunks and head["upstream_chunks"] == 0
    for s in others:
        assert s["upstream_chunks"] == chunks and s["unicast_chunks"] == 0 and s["reconnects"] == 0
    assert [s["forwarded_chunks"] for s in (head, *others)] == [chunks] * (len(names) - 1) + [0]
    assert stats["unicast_bytes_sent"] == site["header"].stored_bytes + 8 * chunks  # once, to the head
    log = server.log_path.read_text()
    assert len(re.findall(r"joins at position \d+ after", log)) == len(names)


def test_a_client_killed_mid_transfer_the_chain_closes_the_gap(site, repo_dir, tmp_path):
    names = list(CLIENTS)[:4]
    with lab_for(len(names) + 2, "ack") as lab:
        server = Server(lab, site, repo_dir, tmp_path / "serve.log", gather="2")
        # The head holds after 3 chunks, the client behind it (the victim) after 2: the chain is
        # under way, everyone is alive, nobody is done.
        clients = start_clients(lab, server, tmp_path, names, "--pause", "0:3", "--pause", "1:2")
        order = positions(clients)
        head, victim, after, last = (clients[order[p]][0] for p in range(4))
        for proc in (head, victim):
            event(proc, lambda o: "paused" in o)
        # A neighbour without the chain's key knocks at the head while the chain is live.
        intruder = lab.spawn(len(names) + 1, [sys.executable, str(PEER), "intrude", clients[order[0]][2],
                                              site["image"]], env={"PEER_ADDRESS": lab.address(len(names) + 1)})
        knock = event(intruder, lambda o: "status" in o)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=EVENT_TIMEOUT)
        again = event(after, lambda o: "position" in o)  # it lost its upstream and asked the server
        head.stdin.write("resume\n")
        head.stdin.flush()
        done = {order[p]: finished(clients[order[p]][0]) for p in (0, 2, 3)}
        server.stop()
    assert knock == {"status": 1, "message": "wrong chain key", "frame_bytes": 0}
    assert again == {"position": 2, "upstream": clients[order[0]][2], "lost": clients[order[1]][2]}
    for name in done:
        assert filecmp.cmp(site["reference"], clients[name][1], shallow=False), name
    first, behind, tail = (done[order[p]]["stats"] for p in (0, 2, 3))
    assert first["refused_hellos"] == 1 and first["downstreams"] == 2  # the victim, then the one behind it
    assert behind["reconnects"] == 1 and tail["reconnects"] == 0
    assert tail["upstream_chunks"] > 2  # the chain behind the gap went on forwarding
    log = server.log_path.read_text()
    assert f"{order[2]} reports its upstream {order[1]} ({clients[order[1]][2]}) lost" in log
    assert f"gap closed: {order[2]} now follows {order[0]}" in log


def test_a_peer_that_corrupts_what_it_forwards_is_dropped_and_nothing_wrong_is_written(site, repo_dir, tmp_path):
    names = list(CLIENTS)[:4]
    with lab_for(len(names) + 1, "acc") as lab:
        server = Server(lab, site, repo_dir, tmp_path / "serve.log", gather="2")
        clients = start_clients(lab, server, tmp_path, names, "--corrupt-position", "1")
        order = positions(clients)
        done = {name: finished(clients[name][0]) for name in names}
        server.stop()
    for name in names:
        assert filecmp.cmp(site["reference"], clients[name][1], shallow=False), name
    bad, after, last = (done[order[p]]["stats"] for p in (1, 2, 3))
    assert after["bad_chunks"] == 1 and after["reconnects"] == 1  # dropped at its first bad chunk
    assert done[order[2]]["bad_chunks"] == 0  # the writer never saw it
    assert last["bad_chunks"] == 0
    log = server.log_path.read_text()
    assert f"{order[2]} reports its upstream {order[1]}" in log
    assert f"gap closed: {order[2]} now follows {order[0]}" in log


@pytest.fixture(scope="module")
def loopback_server(site, repo_dir):
    with ServeProcess(site["descriptors"], repo_dir, site["base"] / "cache", site["base"] / "route.sqlite",
                      "--chain-gather", "0") as proc:
        yield proc
        assert "Traceback" not in proc.log()


LISTEN = "10.0.0.1:9"
ROUTE_CASES = [
    ("no token", None, {"image": "a" * 64, "listen": LISTEN}, 403, "Authorization: Bearer"),
    ("wrong token", "0" * 32, {"image": "a" * 64, "listen": LISTEN}, 403, "wrong token"),
    ("not JSON", "ok", b"{", 400, "not JSON"),
    ("unknown field", "ok", {"image": "a" * 64, "listen": LISTEN, "x": 1}, 400, "unknown field"),
    ("bad listen", "ok", {"image": "a" * 64, "listen": "here"}, 400, "listen must be"),
    ("bad lost", "ok", {"image": "a" * 64, "listen": LISTEN, "lost": 7}, 400, "lost must be"),
    ("unknown image", "ok", {"image": "a" * 64, "listen": LISTEN}, 404, "not in the published manifest"),
]


@pytest.mark.parametrize("token, body, status, message", [c[1:] for c in ROUTE_CASES],
                         ids=[c[0] for c in ROUTE_CASES])
def test_the_chain_route_refuses_bad_requests(loopback_server, token, body, status, message):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {CLIENTS['chain01'] if token == 'ok' else token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, _, answer = request(loopback_server, "POST", "/v1/hosts/chain01/chain", headers, data)
    assert got == status and message in json.loads(answer)["error"], answer


def test_the_chain_route_answers_a_join_and_takes_only_post(loopback_server, site):
    headers = {"Authorization": f"Bearer {CLIENTS['chain02']}"}
    body = json.dumps({"image": site["image"], "listen": LISTEN, "lost": None}).encode()
    got, _, answer = request(loopback_server, "POST", "/v1/hosts/chain02/chain", headers, body)
    assert got == 200
    answer = json.loads(answer)
    assert answer["upstream"] is None and re.fullmatch(r"[0-9a-f]{64}", answer["key"]), answer
    got, headers_back, _ = request(loopback_server, "GET", "/v1/hosts/chain02/chain", headers)
    assert got == 405 and headers_back["Allow"] == "POST"


BAD_GATHER = ["-1", "601", "nan", "inf", "soon"]


@pytest.mark.parametrize("value", BAD_GATHER)
def test_a_bad_chain_gather_exits_2_before_anything_is_made(site, repo_dir, tmp_path, value):
    argv = ["serve", "--plain-http", "--descriptors", str(site["descriptors"]), "--repo", str(repo_dir), "--cache",
            str(tmp_path / "cache"), "--history", str(tmp_path / "h.sqlite"), "--listen", "127.0.0.1:0",
            "--stream-listen", "127.0.0.1:0", "--seconds", "0", f"--chain-gather={value}"]
    proc = run(ais_command(*argv), check=False, timeout=60)
    assert proc.returncode == 2 and "argument --chain-gather: expected seconds from 0 to 600" in proc.stderr, \
        proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


def test_a_join_waiting_for_the_gather_window_holds_no_worker(site, repo_dir, tmp_path):
    """With one worker thread and a gather window of 600 s, the server still answers other requests
    while a join waits: the event loop holds the join, not the worker."""
    import http.client
    from urllib.parse import urlsplit

    with ServeProcess(site["descriptors"], repo_dir, site["base"] / "cache", tmp_path / "h.sqlite",
                      "--workers", "1", "--chain-gather", "600") as server:
        url = urlsplit(server.url)
        waiting = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        body = json.dumps({"image": site["image"], "listen": LISTEN, "lost": None})
        waiting.request("POST", "/v1/hosts/chain03/chain", body=body,
                        headers={"Authorization": f"Bearer {CLIENTS['chain03']}"})
        for _ in range(3):
            status, _, _ = request(server, "GET", "/v1/health")
            assert status == 200
        assert "chain03 (10.0.0.1:9) joins at position 0" in server.log()  # the join is in, unanswered
        waiting.close()
