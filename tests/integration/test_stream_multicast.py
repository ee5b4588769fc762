"""Multicast streaming between network namespaces on a bridge: receivers, a late joiner, a removed
image, and a neighbour without a token (forged datagrams, one small request).

Nothing here waits on the clock. Moments are events: a watching neighbour (tests/integration/
mcast_peer.py) reports who asked and which chunk transmissions went by; the bridge port of a host is
closed to multicast (`mcast_flood off`) until the test opens it, and the server is frozen (SIGSTOP)
while the test changes something "mid-session", so what happens mid-session really does.
"""

import json
import math
import os
import signal
import sys
from pathlib import Path

import pytest

from ais.run import run
from ais.stream.format import read_header
from aislab.lines import next_line
from aislab.net import NetLab, make_fs_image, make_tree
from ais.stream.multicast import REQUEST_BYTES_MAX, within_budget, wire_bytes
from ais.stream.pack import pack
from ais.stream.catalog import image_tag
from ais.stream.writer import write_image

GROUP, DATA_PORT, TCP_PORT = "239.255.42.1", 7100, 7000
PEER = Path(__file__).with_name("mcast_peer.py")
EVENT_TIMEOUT = 120  # a safety net against a hung test, never a moment the test relies on


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    base = tmp_path_factory.mktemp("mc")
    fs = make_fs_image(make_tree(base / "src", random_kib=4096), base / "fs.img", 24)
    images = base / "images"
    images.mkdir()
    pack(fs, images / "img-m.aisimg", image_id="img-m", packages=[])
    reference = base / "reference.img"
    write_image(images / "img-m.aisimg", reference)
    return images, reference


# ------------------------------------------------------------------ lab helpers (this file's own)


def multicast_to(lab, i: int, on: bool) -> None:
    """Open or close host i's bridge port to multicast (data and requests alike)."""
    run(["bridge", "-n", lab.bridge_ns, "link", "set", "dev", f"p{i}", "mcast_flood", "on" if on else "off"])


def peer(lab, i: int, mode: str, image_id: str, *args: str, port: int = DATA_PORT):
    proc = lab.spawn(i, [sys.executable, str(PEER), mode, GROUP, str(port), str(image_tag(image_id)), *args],
                     env={"PEER_ADDRESS": lab.address(i)})
    return proc


def event(proc, wanted, timeout: float = EVENT_TIMEOUT, quiet: bool = False) -> dict:
    """The next JSON line from proc for which wanted(obj) is true ({} after timeout when quiet)."""
    while True:
        line = next_line(proc.stdout, timeout)
        if not line and quiet and proc.poll() is None:
            return {}
        if not line:
            raise AssertionError(f"no such event from the peer: {proc.poll()=} {proc.stderr.read() if proc.poll() is not None else ''}")
        obj = json.loads(line)
        if wanted(obj):
            return obj


def wait_listening(proc) -> None:
    event(proc, lambda o: "listening" in o)


def serve(lab, images: Path, rate: str = "2"):
    proc = lab.spawn(0, lab.ais(0, "image", "serve-stream", str(images), "--listen", f"{lab.address(0)}:{TCP_PORT}",
                                "--multicast", f"{GROUP}:{DATA_PORT}", "--interface", lab.address(0),
                                "--rate", rate))
    wait_listening(proc)
    return proc


def stop_and_stats(proc) -> dict:
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def receiver(lab, i: int, image_id: str, target: Path, *extra: str):
    return lab.spawn(i, lab.ais(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}", "--image", image_id,
                                "--multicast", f"{GROUP}:{DATA_PORT}", "--interface", lab.address(i),
                                "--stall-timeout", "20", "--json", "--create-file", *extra, str(target)))


def finished(proc) -> dict:
    out, err = proc.communicate(timeout=EVENT_TIMEOUT)
    assert proc.returncode == 0, err
    return json.loads(out)


def start_together(lab, watcher, hosts, spawn):
    """Start receivers on hosts while the server hears no request; open the server's port once every
    one of them has asked (so all of them are in the session from its first datagram)."""
    multicast_to(lab, 0, False)
    procs = [spawn(i) for i in hosts]
    waiting = {lab.address(i) for i in hosts}
    while waiting:
        gone = [(proc.args, proc.stderr.read()) for proc in procs if proc.poll() is not None]
        assert not gone, f"a receiver ended before it asked: {gone}"
        waiting.discard(event(watcher, lambda o: "request_from" in o, timeout=5, quiet=True).get("request_from"))
    multicast_to(lab, 0, True)
    return procs


# ------------------------------------------------------------------ tests


def test_three_receivers_and_a_late_joiner(image, tmp_path):
    """Three receivers share a session from its start; a fourth joins when more than half the chunks
    have gone by (the server is frozen while its port opens), and asks only for what it missed."""
    images, reference = image
    header = read_header(images / "img-m.aisimg")
    chunks = len(header.chunks)
    with NetLab(6) as lab:
        watcher = peer(lab, 5, "watch", "img-m")
        event(watcher, lambda o: "ready" in o)
        server = serve(lab, images)
        multicast_to(lab, 4, False)  # the late joiner hears nothing yet
        procs = start_together(lab, watcher, (1, 2, 3, 4), lambda i: receiver(lab, i, "img-m", tmp_path / f"t{i}"))
        sent_before = event(watcher, lambda o: o.get("sent", 0) >= math.ceil(chunks / 2))["sent"]
        os.kill(server.pid, signal.SIGSTOP)
        multicast_to(lab, 4, True)  # joins mid-session: the rest of the session reaches it
        os.kill(server.pid, signal.SIGCONT)
        outputs = {i: finished(proc) for i, proc in zip((1, 2, 3, 4), procs)}
        stats = stop_and_stats(server)
    for i in (1, 2, 3, 4):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
        assert outputs[i]["chunks_written"] == chunks
    run(["e2fsck", "-fn", str(tmp_path / "t4")])
    # The late joiner missed at least the chunks sent before its port opened: they went out again.
    assert stats["multicast_chunks_sent"] >= chunks + sent_before - 1
    # One copy for the session, at most one more for the late joiner, whatever the machine's speed:
    # every receiver was in from the start but one, and requests for queued chunks are merged.
    assert stats["multicast_bytes_sent"] <= 2 * sum(wire_bytes(c.stored_length) for c in header.chunks)
    assert stats["multicast_merged"] > 0


def test_image_deleted_mid_session(image, tmp_path):
    """A rebuild's gc unlinks the image while two receivers are half way: they still finish (the
    server keeps the open file for the session), and the server goes on serving other images."""
    images, reference = image
    served = tmp_path / "images"
    served.mkdir()
    (served / "img-m.aisimg").write_bytes((images / "img-m.aisimg").read_bytes())
    fs = tmp_path / "fs-n.img"
    make_fs_image(make_tree(tmp_path / "src-n", seed=2, random_kib=1024, text_files=20), fs, 16)
    pack(fs, served / "img-n.aisimg", image_id="img-n", packages=[])
    header = read_header(served / "img-m.aisimg")
    with NetLab(4) as lab:
        watcher = peer(lab, 3, "watch", "img-m")
        event(watcher, lambda o: "ready" in o)
        server = serve(lab, served)
        procs = start_together(lab, watcher, (1, 2), lambda i: receiver(lab, i, "img-m", tmp_path / f"t{i}"))
        event(watcher, lambda o: o.get("sent", 0) >= 1)
        os.kill(server.pid, signal.SIGSTOP)  # mid-session for certain: one chunk of several has gone by
        (served / "img-m.aisimg").unlink()
        os.kill(server.pid, signal.SIGCONT)
        for proc in procs:
            assert finished(proc)["chunks_written"] == len(header.chunks)
        finished(receiver(lab, 1, "img-n", tmp_path / "n1"))  # the server still serves the rest
        assert server.poll() is None
        stats = stop_and_stats(server)
    for i in (1, 2):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
    run(["e2fsck", "-fn", str(tmp_path / "n1")])
    assert stats["multicast_chunks_sent"] >= len(header.chunks)


def test_forged_datagrams_do_not_break_a_session(image, tmp_path):
    """A neighbour without a token floods the session with forged datagrams (1-byte payloads at every
    slot, misaligned offsets, lying length fields, a garbage copy of the last chunk). The receivers
    refuse the wrong sizes, drop the chunk that fails its hash and ask for it again, and finish with
    exactly the image's bytes."""
    images, reference = image
    header = read_header(images / "img-m.aisimg")
    lengths = json.dumps([c.stored_length for c in header.chunks])
    with NetLab(5) as lab:
        watcher = peer(lab, 4, "watch", "img-m")
        event(watcher, lambda o: "ready" in o)
        server = serve(lab, images)
        forger = peer(lab, 3, "forge", "img-m", lengths)
        event(forger, lambda o: "ready" in o)
        procs = start_together(lab, watcher, (1, 2), lambda i: receiver(lab, i, "img-m", tmp_path / f"t{i}"))
        forged = event(forger, lambda o: "forged" in o)
        outputs = [finished(proc) for proc in procs]
        stop_and_stats(server)
    assert forged["forged"] > 600
    for i, out in zip((1, 2), outputs):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
        assert out["chunks_written"] == len(header.chunks)
        assert out["mcast_refused"] >= 1  # wrong sizes never reach a chunk
        assert out["mcast_bad_chunks"] >= 1  # the forged last chunk failed its hash and was asked for again


def test_one_small_request_makes_the_server_send_a_bounded_amount(tmp_path):
    """One request datagram naming every chunk, from a neighbour without a token, makes the server
    send at most REQUEST_BYTES_MAX of chunks (plus the chunk that crosses it), not the whole image
    (the old server sent all 12.6 MB for 26 bytes)."""
    fs = make_fs_image(make_tree(tmp_path / "src", seed=3, random_kib=12288, text_files=20), tmp_path / "fs.img", 48)
    images = tmp_path / "images"
    images.mkdir()
    pack(fs, images / "img-b.aisimg", image_id="img-b", packages=[])
    header = read_header(images / "img-b.aisimg")
    assert header.stored_bytes > 2 * REQUEST_BYTES_MAX  # the premise: one image is far more than the bound
    sizes = [c.stored_length for c in header.chunks]
    with NetLab(2) as lab:
        server = serve(lab, images, rate="20")
        asker = peer(lab, 1, "ask", "img-b", str(len(sizes)), str(len(sizes) - 1))
        request_bytes = event(asker, lambda o: "request_bytes" in o)["request_bytes"]
        stats = stop_and_stats(server)
    honoured = list(within_budget(range(len(sizes)), sizes))
    assert request_bytes < 64 and len(sizes) - 1 not in honoured
    assert sum(sizes[i] for i in honoured[:-1]) < REQUEST_BYTES_MAX
    # exactly the chunks within the budget, each once, and the marker chunk that showed they were all sent
    assert stats["multicast_bytes_sent"] == sum(wire_bytes(sizes[i]) for i in honoured) + wire_bytes(sizes[-1]), (stats, sizes, honoured)
    assert stats["multicast_over_budget"] == len(sizes) - len(honoured)  # the marker, too, the first time
