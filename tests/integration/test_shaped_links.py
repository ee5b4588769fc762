"""Streaming and reinstalls outside loopback: between network namespaces over tc-shaped links, and onto
a target disk that writes slowly.

Each link is shaped both ways with a token bucket (tc tbf) whose queue is bounded, so bursts the link
cannot take are dropped (`NetLab(rate=...)`); the slow disk is a loop device over a file on a FUSE
filesystem that throttles writes (`SlowDisk`). Every transfer must finish on its first connection with
the image written exactly (bytes, e2fsck); every reinstall must leave exactly the SCD's packages, clean
`rpm -Va`, the host files and a matching install record. No timing is asserted: bench/ measures rates.
"""

import json
import os
import sqlite3
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, SlowDisk, reinstall_argv, serve_in, target_facts
from ais.descriptors import load_site
from ais.cost import CostModel, save_calibration
from ais.run import run
from aislab.site import publish_base_cache, subset_descriptors
from ais.stream.format import read_header
from aislab.lines import next_line
from aislab.net import NetLab, make_fs_image, make_tree
from ais.stream.pack import pack
from ais.stream.writer import write_image

ROOT = Path(__file__).resolve().parents[2]
TCP_PORT, GROUP, MCAST_PORT = 7200, "239.255.42.17", 7201
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "db01": "fb9577bf9257dd86cd19d77acdaf07b7"}


def tag(name: str) -> str:
    return f"{name}{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A 6 MiB-of-random-data image (about 6 chunks of stored data) and its written reference."""
    base = tmp_path_factory.mktemp("shaped")
    fs = make_fs_image(make_tree(base / "src", random_kib=6144), base / "fs.img", 32)
    images = base / "images"
    images.mkdir()
    pack(fs, images / "img-s.aisimg", image_id="img-s", packages=[])
    reference = base / "reference.img"
    write_image(images / "img-s.aisimg", reference)
    return images, reference


def wait_listening(proc, what: str) -> dict:
    line = next_line(proc.stdout, 30)
    assert line.startswith('{"listening"'), f"{what} did not start: {line!r}"
    return json.loads(line)["listening"]


def serve_stream(lab, images, *extra):
    proc = lab.spawn(0, lab.ais(0, "image", "serve-stream", str(images), "--listen",
                                f"{lab.address(0)}:{TCP_PORT}", "--seconds", "120", *extra))
    wait_listening(proc, "ais image serve-stream")
    return proc


def get_image(lab, i, target, *extra):
    """`ais image get` in host i; returns its JSON summary."""
    proc = lab.spawn(i, lab.ais(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}", "--image", "img-s",
                                "--json", "--create-file", *extra, str(target)))
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.mark.parametrize("rate", ["100mbit", "1gbit"])
def test_unicast_over_a_shaped_link(image, tmp_path, rate):
    """The whole image over one TCP connection: a full send buffer is not a client that went away."""
    images, reference = image
    with NetLab(2, tag=tag("aisu"), rate=rate) as lab:
        serve_stream(lab, images)
        summary = get_image(lab, 1, tmp_path / "t")
    assert summary["connections"] == 1, summary  # no reconnects
    assert summary["chunks_written"] == summary["chunks_total"] == len(read_header(images / "img-s.aisimg").chunks)
    assert (tmp_path / "t").read_bytes() == reference.read_bytes()
    run(["e2fsck", "-fn", str(tmp_path / "t")])


def test_multicast_over_a_shaped_link(image, tmp_path):
    """Two receivers behind 100 Mbit/s links with bounded queues: both images written exactly."""
    images, reference = image
    with NetLab(3, tag=tag("aism"), rate="100mbit") as lab:
        serve_stream(lab, images, "--multicast", f"{GROUP}:{MCAST_PORT}", "--interface", lab.address(0),
                     "--rate", "8")
        receivers = [lab.spawn(i, lab.ais(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}",
                                          "--image", "img-s", "--multicast", f"{GROUP}:{MCAST_PORT}",
                                          "--interface", lab.address(i), "--stall-timeout", "20", "--json",
                                          "--create-file", str(tmp_path / f"t{i}")))
                     for i in (1, 2)]
        for proc in receivers:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err[-3000:]
            assert json.loads(out)["chunks_written"] == len(read_header(images / "img-s.aisimg").chunks)
    for i in (1, 2):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
        run(["e2fsck", "-fn", str(tmp_path / f"t{i}")])


# ------------------------------------------------------------------ full reinstalls


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("shapedsite")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], list(TOKENS))
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    return {"base": base, "descriptors": descriptors, "manifest": manifest, "site": load_site(descriptors, repo_dir)}


def serve(lab, repo_dir, site, history, log):
    return serve_in(lab, 0, site["descriptors"], repo_dir, site["base"] / "cache", history, log)


def reinstall_in(lab, i, url, host, disk, tmp_path):
    proc = lab.spawn(i, reinstall_argv(url, host, TOKENS[host], disk.device, tmp_path / f"state-{host}"))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert f"reinstalled {host}" in err


def assert_installed(site, history, host, disk):
    hcd = next(h for h in site["site"].hosts if h.name == host)
    facts = target_facts(disk.device, [f.path for f in hcd.files])
    assert facts["nevras"] == set(site["site"].configuration(hcd.scd).nevras)  # exactly the SCD's set
    assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
    for f in hcd.files:
        content, mode, _, _ = facts["files"][f.path]
        assert content == f.content and mode == f.mode
    record = facts["record"]
    assert record["host"] == host and record["scd"] == hcd.scd
    assert record["image"]["id"] == site["manifest"]["configurations"][hcd.scd]["image"]
    assert record["image"]["transport"] == "unicast"
    with sqlite3.connect(history) as db:
        status, report = db.execute("SELECT status, report FROM reports WHERE host = ? ORDER BY id DESC LIMIT 1",
                                    (host,)).fetchone()
    assert status == "ok" and json.loads(report)["record"] == record  # the target and the history agree


def test_reinstall_over_a_100mbit_link(site, repo_dir, tmp_path):
    history, log_path = tmp_path / "history.sqlite", tmp_path / "serve.log"
    with LoopDisk(tmp_path / "disk.img", 512) as disk:
        with NetLab(2, tag=tag("aisr"), rate="100mbit") as lab, open(log_path, "w") as log:
            url = serve(lab, repo_dir, site, history, log)
            reinstall_in(lab, 1, url, "mail01", disk, tmp_path)
        assert_installed(site, history, "mail01", disk)


def test_reinstall_onto_a_slow_disk(site, repo_dir, tmp_path):
    """The target's writes run at 16 MB/s behind a 1 Gbit/s link: the client writes slower than the
    server sends."""
    history, log_path = tmp_path / "history.sqlite", tmp_path / "serve.log"
    with SlowDisk(tmp_path / "slow", 512, 16e6) as disk:
        with NetLab(2, tag=tag("aisd"), rate="1gbit") as lab, open(log_path, "w") as log:
            url = serve(lab, repo_dir, site, history, log)
            reinstall_in(lab, 1, url, "db01", disk, tmp_path)
        assert_installed(site, history, "db01", disk)
