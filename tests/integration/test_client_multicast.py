"""Real reinstalls by multicast: a real `ais serve --multicast` in one network namespace, three real
`ais client reinstall --transport multicast` runs, each in its own namespace on the same bridge, onto
loop devices, in one multicast session; and a client whose multicast path is blocked, which falls back
to unicast and says so.

Each target must hold exactly its SCD's packages (`rpm -qa`), pass `e2fsck -fn`, and carry an install
record equal to the one the server's history stored; the image must have gone out about once in all
(the streamer's own byte count, logged when `ais serve` stops), not once per client, and nothing by TCP,
although a neighbour without a token floods the session with forged datagrams.

Nothing waits on the clock: the server hears no request (its bridge port is closed to multicast) until
a watching neighbour (tests/integration/mcast_peer.py) has heard every client ask, so all three are in
the session from its first datagram however slowly each ais-boot step starts.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, reinstall_argv, target_facts
from ais.descriptors import load_site
from ais.cost import CostModel, save_calibration
from aislab.site import publish_base_cache, stored_reports, subset_descriptors
from ais.run import run
from ais.stream.format import read_header
from aislab.lines import next_line
from aislab.net import ais_command, NetLab
from ais.stream.multicast import wire_bytes
from ais.stream.catalog import image_tag

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("mail01", "db01", "db02")  # three SCDs' hosts, all served from the one base image
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "db01": "fb9577bf9257dd86cd19d77acdaf07b7",
          "db02": "e0d6a1f1c1839c1896667c1b80d26e24"}
GROUP, PORT = "239.255.42.9", 7400
RATE_MBPS = "2"
PEER = Path(__file__).with_name("mcast_peer.py")
EVENT_TIMEOUT = 120  # a safety net against a hung test, never a moment the test relies on


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("mclient")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], list(HOSTS))
    db01 = descriptors / "hcd" / "db01.xml"  # db01's HCD names its transport; its client names none
    db01.write_text(db01.read_text().replace('<hcd name="db01"', '<hcd name="db01" transport="multicast"', 1))
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    images = {manifest["configurations"][c]["image"] for c in ("mail", "db")}
    assert len(images) == 1  # the premise: all three hosts stream the same image
    return {"base": base, "descriptors": descriptors, "manifest": manifest, "image": images.pop(),
            "site": load_site(descriptors, repo_dir)}


def serve_in(lab, repo_dir, site, history, log):
    """`ais serve` inside host 0 of the lab; returns (process, control URL)."""
    address = lab.address(0)
    argv = [*ais_command(), "serve", "--plain-http", "--descriptors", str(site["descriptors"]),
            "--repo", str(repo_dir), "--cache", str(site["base"] / "cache"), "--history", str(history),
            "--listen", f"{address}:0", "--stream-listen", f"{address}:0", "--poll", "0.2",
            "--multicast", f"{GROUP}:{PORT}", "--multicast-interface", address, "--multicast-rate", RATE_MBPS]
    proc = lab.spawn(0, argv, stderr=log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
    line = next_line(proc.stdout, 30)
    assert line.startswith('{"listening"'), f"ais serve did not start: {line!r}\n{log.name}"
    info = json.loads(line)["listening"]
    assert info["multicast"] == f"{GROUP}:{PORT}"
    return proc, info["url"]


def multicast_to(lab, i: int, on: bool) -> None:
    """Open or close host i's bridge port to multicast (data and requests alike)."""
    run(["bridge", "-n", lab.bridge_ns, "link", "set", "dev", f"p{i}", "mcast_flood", "on" if on else "off"])


def peer(lab, i: int, mode: str, image_id: str, *args: str):
    return lab.spawn(i, [sys.executable, str(PEER), mode, GROUP, str(PORT), str(image_tag(image_id)), *args],
                     env={"PEER_ADDRESS": lab.address(i)})


def event(proc, wanted) -> dict:
    """The next JSON line from proc for which wanted(obj) is true."""
    while True:
        line = next_line(proc.stdout, EVENT_TIMEOUT)
        assert line, f"no such event from the peer: {proc.poll()=}"
        obj = json.loads(line)
        if wanted(obj):
            return obj


def cmdline(tmp_path, url, disk):
    path = tmp_path / "cmdline"
    path.write_text(f"BOOT_IMAGE=/vmlinuz quiet ais.server={url} ais.target={disk.device} ais.host=db02 "
                    f"ais.token={TOKENS['db02']} ais.transport=multicast\n")
    return path



def test_three_clients_share_one_multicast_session(site, repo_dir, tmp_path):
    hist, log_path = tmp_path / "history.sqlite", tmp_path / "serve.log"
    disks = [LoopDisk(tmp_path / f"disk{i}.img", 512) for i in range(len(HOSTS))]
    try:
        with NetLab(len(HOSTS) + 2, tag=f"aicm{os.getpid() % 10000}") as lab, \
                open(log_path, "w") as log:
            neighbour = len(HOSTS) + 1
            header = read_header(site["base"] / "cache" / "images" / f"{site['image']}.aisimg")
            watcher = peer(lab, neighbour, "watch", site["image"])
            forger = peer(lab, neighbour, "forge", site["image"], json.dumps([c.stored_length for c in header.chunks]))
            for proc in (watcher, forger):
                event(proc, lambda o: "ready" in o)
            server, url = serve_in(lab, repo_dir, site, hist, log)
            multicast_to(lab, 0, False)  # the server hears no request until every client has asked
            # mail01 names its multicast address; db01 names neither address (the one that routes to the
            # server, not loopback) nor transport (its HCD's); db02 boots with ais-boot and ais.transport=multicast.
            clients = [
                lab.spawn(1, reinstall_argv(url, "mail01", TOKENS["mail01"], disks[0].device, tmp_path / "st0",
                                            "--transport", "multicast", "--mcast-interface", lab.address(1))),
                lab.spawn(2, reinstall_argv(url, "db01", TOKENS["db01"], disks[1].device, tmp_path / "st1")),
                lab.spawn(3, ["sh", str(ROOT / "ais/client/ais-boot"), "--cmdline", str(cmdline(tmp_path, url, disks[2])),
                              "--state", str(tmp_path / "st2"), "--no-reboot"],
                          env={"AIS": ais_command()[0]}),
            ]
            waiting = {lab.address(i) for i in range(1, len(HOSTS) + 1)}
            while waiting:
                waiting.discard(event(watcher, lambda o: "request_from" in o)["request_from"])
            multicast_to(lab, 0, True)
            assert event(forger, lambda o: "forged" in o)["forged"] > 600  # while the session runs
            outputs = [proc.communicate(timeout=EVENT_TIMEOUT) for proc in clients]
            server.terminate()
            server.communicate(timeout=30)
            assert server.returncode == 0, log_path.read_text()[-2000:]
        for proc, (out, err), host in zip(clients, outputs, HOSTS):
            assert proc.returncode == 0, f"{host}:\n{err[-3000:]}"
            assert "by multicast" in err and ("reinstalled; staying up" if host == "db02" else f"reinstalled {host}") in err

        image_id, stored = site["image"], site["manifest"]["images"][site["image"]]["stored_bytes"]
        for host, disk in zip(HOSTS, disks):
            hcd = next(h for h in site["site"].hosts if h.name == host)
            facts = target_facts(disk.device, [f.path for f in hcd.files])
            assert facts["nevras"] == set(site["site"].configuration(hcd.scd).nevras)  # exactly the SCD's set
            assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
            for f in hcd.files:
                assert facts["files"][f.path][0] == f.content
            record = facts["record"]
            assert record["host"] == host and record["scd"] == hcd.scd
            assert record["image"] == {"id": image_id, "key": record["image"]["key"], "stored_bytes": stored,
                                       "transport": "multicast", "transport_fallback": None}
            status, report = stored_reports(hist, host)[-1]
            assert status == "ok" and report["record"] == record  # the target and the server's history agree

        found = re.findall(r"stream statistics: (\{.*\})", log_path.read_text())
        assert found, log_path.read_text()[-2000:]
        stats = json.loads(found[-1])
        assert stats["unicast_bytes_sent"] == 0  # every chunk came by multicast
        # All three were in the session from its first datagram, so each chunk went out once, however
        # fast the machine (the forged copy of the last chunk may cost it one more transmission).
        once = sum(wire_bytes(c.stored_length) for c in header.chunks)
        assert once <= stats["multicast_bytes_sent"] <= once + wire_bytes(header.chunks[-1].stored_length), stats
        assert stats["multicast_requests"] >= 1
    finally:
        for disk in disks:
            disk.close()


def test_multicast_that_makes_no_progress_falls_back_to_unicast(site, repo_dir, tmp_path):
    """The client's multicast path is blocked entirely (its bridge port passes no multicast): after the
    stall timeout the reinstall goes on by unicast, succeeds, and the record and report say why."""
    hist, log_path = tmp_path / "history.sqlite", tmp_path / "serve.log"
    disk = LoopDisk(tmp_path / "disk.img", 512)
    try:
        with NetLab(2, tag=f"aicf{os.getpid() % 10000}") as lab, open(log_path, "w") as log:
            server, url = serve_in(lab, repo_dir, site, hist, log)
            multicast_to(lab, 1, False)
            client = lab.spawn(1, reinstall_argv(url, "db01", TOKENS["db01"], disk.device, tmp_path / "st",
                                                 "--transport", "multicast"))
            out, err = client.communicate(timeout=EVENT_TIMEOUT)
            server.terminate()
            server.communicate(timeout=30)
        assert client.returncode == 0, err[-3000:]
        assert "fallback: multicast made no progress" in err and "reinstalled db01" in err
        facts = target_facts(disk.device, [])
        record = facts["record"]
        assert facts["fsck_rc"] == 0 and record["image"]["transport"] == "unicast"
        assert "no chunk of image" in record["image"]["transport_fallback"]
        status, report = stored_reports(hist, "db01")[-1]
        assert status == "ok" and report["record"] == record
        assert report["transport_fallback"] == record["image"]["transport_fallback"]
        stats = json.loads(re.findall(r"stream statistics: (\{.*\})", log_path.read_text())[-1])
        chunks = read_header(site["base"] / "cache" / "images" / f"{site['image']}.aisimg").stored_bytes
        assert stats["unicast_bytes_sent"] >= chunks  # every chunk came by TCP
    finally:
        disk.close()
