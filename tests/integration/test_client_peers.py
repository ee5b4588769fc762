"""Real reinstalls by the peer transports: a real `ais serve` in one network namespace (its uplink the
narrow link), four real `ais client reinstall` runs in four others on the same bridge, onto loop
devices, with the transport the plans name (`ais serve --transport`; the clients name none).

Each target must hold exactly its SCD's packages, its host files, pass `e2fsck -fn` and carry an install
record equal to the one in the server's history, saying which transport delivered the image and that
nothing fell back. The image must have crossed the server's link fewer times than there are clients
(the server's own count of the bytes it sent, logged when it stops): the clients passed it on.

The remainder's RPMs travel by BitTorrent too (ais.client.rpmpeers): every RPM the install step
used was fetched from the peers in the image step and checked, and the server sent fewer RPM bytes
than the four remainders hold together (db01 and db02 share theirs); a stranger without a token
gets no RPM's torrent (403).
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, reinstall_argv, target_facts
from aislab.lines import next_line
from aislab.net import NetLab, ais_command
from aislab.site import publish_base_cache, stored_reports, subset_descriptors
from ais.cost import CostModel, save_calibration
from ais import siteca
from ais.descriptors import load_site
from ais.stream.format import read_header

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("mail01", "db01", "db02", "mon01")  # four SCDs' hosts, all served from the one base image
EVENT_TIMEOUT = 300  # a safety net against a hung test, never a moment the test relies on


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("peers")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db", "monitor"],
                                     list(HOSTS))
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    images = {manifest["configurations"][c]["image"] for c in ("mail", "db", "monitor")}
    assert len(images) == 1  # the premise: all four hosts stream the same image
    loaded = load_site(descriptors, repo_dir)
    return {"base": base, "descriptors": descriptors, "manifest": manifest, "image": images.pop(),
            "site": loaded, "tokens": {h.name: h.token for h in loaded.hosts}}


def serve_in(lab, repo_dir, site, transport, history, log, tls=False):
    address = lab.address(0)
    if tls:
        if not siteca.ca_path(site["base"] / "cache").exists():
            siteca.init(site["base"] / "cache")
        siteca.issue_server(site["base"] / "cache", [address])
    argv = [*ais_command(), "serve", *([] if tls else ["--plain-http"]), "--descriptors", str(site["descriptors"]), "--repo", str(repo_dir),
            "--cache", str(site["base"] / "cache"), "--history", str(history), "--listen", f"{address}:0",
            "--stream-listen", f"{address}:0", "--poll", "0.2", "--transport", transport,
            "--chain-gather", "60"]  # all four are expected (their plans say chain): no 60 s wait
    proc = lab.spawn(0, argv, stderr=log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
    line = next_line(proc.stdout, 30)
    assert line.startswith('{"listening"'), f"ais serve did not start: {line!r}\n{log.name}"
    return proc, json.loads(line)["listening"]["url"]


def server_bytes_sent(log: str, image_id: str) -> int:
    """Image bytes the server sent: by its TCP stream (the chain's head, any gaps) and as the web seed
    (BitTorrent), from the statistics `ais serve` logs when it stops."""
    stream = re.findall(r"stream statistics: (\{.*\})", log)
    assert stream, log[-2000:]
    swarm = re.findall(r"swarm statistics: (\{.*\})", log)
    seeded = json.loads(swarm[-1]).get(image_id, {}).get("web_seed_bytes", 0) if swarm else 0
    return json.loads(stream[-1])["unicast_bytes_sent"] + seeded


def package_bytes_sent(log: str) -> int:
    """RPM bytes the server sent (the web seed and plain downloads), from the statistics it logs at stop."""
    found = re.findall(r"package statistics: (\{.*\})", log)
    assert found, log[-2000:]
    return json.loads(found[-1])["bytes_sent"]


def remainder_bytes(site, repo_dir, host: str) -> int:
    """The size of host's remainder: its configuration's packages the image does not hold."""
    hcd = next(h for h in site["site"].hosts if h.name == host)
    nevras = site["manifest"]["configurations"][hcd.scd]["remainder"]
    sizes = {p.name: p.stat().st_size for p in Path(repo_dir).rglob("*.rpm")}
    files = [re.sub(r"^(.*)-\d+:(.*)$", r"\1-\2", n) + ".rpm" for n in nevras]
    assert nevras and all(f in sizes for f in files), (nevras, sorted(sizes))
    return sum(sizes[f] for f in files)


STRANGER = """
import http.client, ssl, sys
url, path = sys.argv[1], sys.argv[2]
host, port = url.split("//")[1].split(":")
for headers in ({}, {"Authorization": "Bearer " + "0" * 32}):
    if url.startswith("https"):  # a stranger checks no certificate
        conn = http.client.HTTPSConnection(host, int(port), timeout=30, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers=headers)
    print(conn.getresponse().status)
"""


def stranger_statuses(lab, i: int, url: str, path: str) -> list[int]:
    """What a machine of the network without a token (none, then a made-up one) gets for path."""
    proc = lab.spawn(i, [sys.executable, "-c", STRANGER, url, path])
    out, _ = proc.communicate(timeout=60)
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("transport,tls", [("chain", False), ("bittorrent", False), ("bittorrent", True)],
                         ids=["chain", "bittorrent", "bittorrent-over-tls"])
def test_four_reinstalls_pass_the_image_on(site, repo_dir, tmp_path, transport, tls):
    """tls: the server's API (plans, torrents, the web seed) over https, checked by the site CA."""
    hist, log_path = tmp_path / "history.sqlite", tmp_path / "serve.log"
    disks = [LoopDisk(tmp_path / f"disk{i}.img", 512) for i in range(len(HOSTS))]
    try:
        with NetLab(len(HOSTS) + 1, tag=f"aip{transport[0]}{os.getpid() % 10000}", rate="1gbit") as lab, \
                open(log_path, "w") as log:
            lab.shape(0, "200mbit")  # the server's uplink is the narrow one
            server, url = serve_in(lab, repo_dir, site, transport, hist, log, tls)
            ca = ["--site-ca", str(siteca.ca_path(site["base"] / "cache"))] if tls else []
            clients = [lab.spawn(i, reinstall_argv(url, host, site["tokens"][host], disk.device, tmp_path / f"st{i}",
                                                   "--local-address", lab.address(i), *ca))
                       for i, (host, disk) in enumerate(zip(HOSTS, disks), 1)]
            outputs = [proc.communicate(timeout=EVENT_TIMEOUT) for proc in clients]
            rpm = site["manifest"]["configurations"]["db"]["remainder"][0]
            rpm_file = re.sub(r"^(.*)-\d+:(.*)$", r"\1-\2", rpm) + ".rpm"
            refused = stranger_statuses(lab, 1, url, f"/v1/packages/{rpm_file}/torrent")
            server.terminate()
            server.communicate(timeout=30)
            assert server.returncode == 0, log_path.read_text()[-2000:]
        for proc, (out, err), host in zip(clients, outputs, HOSTS):
            assert proc.returncode == 0, f"{host}:\n{err[-3000:]}"
            assert f"by {transport}" in err and f"reinstalled {host}" in err
            assert (f"transport {transport} (the plan's)" in err), err[-2000:]
            present = re.search(r"rpm: (\d+) of (\d+) packages were fetched from the peers and check", err)
            assert present and present.group(1) == present.group(2) != "0", err[-3000:]
        assert refused == [403, 403]

        image_id, stored = site["image"], site["manifest"]["images"][site["image"]]["stored_bytes"]
        for host, disk in zip(HOSTS, disks):
            hcd = next(h for h in site["site"].hosts if h.name == host)
            facts = target_facts(disk.device, [f.path for f in hcd.files])
            assert facts["nevras"] == set(site["site"].configuration(hcd.scd).nevras)
            assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
            for f in hcd.files:
                assert facts["files"][f.path][0] == f.content
            record = facts["record"]
            assert record["image"] == {"id": image_id, "key": record["image"]["key"], "stored_bytes": stored,
                                       "transport": transport, "transport_fallback": None}
            status, report = stored_reports(hist, host)[-1]
            assert status == "ok" and report["record"] == record

        once = sum(c.stored_length for c in read_header(site["base"] / "cache" / "images" / f"{image_id}.aisimg").chunks)
        if transport == "chain":  # the chain started once the hosts expected had joined, not after the 60 s window
            assert re.search(r"every host expected has joined \(\d\): the chain starts", log_path.read_text())
        sent = server_bytes_sent(log_path.read_text(), image_id)
        assert once <= sent < len(HOSTS) * once, (sent, once)  # fewer copies than clients crossed its link
        remainders = sum(remainder_bytes(site, repo_dir, host) for host in HOSTS)
        rpm_sent = package_bytes_sent(log_path.read_text())
        assert 0 < rpm_sent < remainders, (rpm_sent, remainders)  # the peers passed RPMs on
    finally:
        for disk in disks:
            disk.close()
