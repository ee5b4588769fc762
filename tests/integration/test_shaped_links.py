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
import select
import sqlite3
from pathlib import Path

import pytest

from ais.client.lab import LoopDisk, reinstall_argv, target_facts
from ais.descriptors import load_site
from ais.planner.cost import CostModel, save_calibration
from ais.run import run
from ais.server.lab import publish_base_cache, subset_descriptors
from ais.stream.format import read_header
from ais.stream.lab import NetLab, ais_command, make_fs_image, make_tree
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
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
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
                                "--json", *extra, str(target)))
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
