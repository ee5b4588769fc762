"""Multicast streaming between network namespaces on a bridge: 3 receivers and a late joiner."""

import json
import time

import pytest

from ais.run import run
from ais.stream.format import pack, read_header
from ais.stream.lab import NetLab, make_fs_image, make_tree
from ais.stream.writer import write_image

GROUP, DATA_PORT, TCP_PORT = "239.255.42.1", 7100, 7000


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


def _wait_listening(proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith('{"listening"'):
            return
        if proc.poll() is not None:
            break
    raise AssertionError(f"server did not start: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_three_receivers_and_a_late_joiner(image, tmp_path):
    images, reference = image
    header = read_header(images / "img-m.aisimg")
    with NetLab(5) as lab:
        server = lab.spawn(0, lab.python(0, "image", "serve-stream", str(images), "--listen",
                                         f"{lab.address(0)}:{TCP_PORT}", "--multicast", f"{GROUP}:{DATA_PORT}",
                                         "--interface", lab.address(0), "--rate", "2", "--seconds", "60"))
        _wait_listening(server)

        def receiver(i):
            argv = lab.python(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}", "--image", "img-m",
                              "--multicast", f"{GROUP}:{DATA_PORT}", "--interface", lab.address(i),
                              "--stall-timeout", "20", "--json", str(tmp_path / f"t{i}"))
            return lab.spawn(i, argv)

        early = [receiver(i) for i in (1, 2, 3)]
        time.sleep(1.0)  # about half the image has gone by at 2 MB/s
        late = receiver(4)
        outputs = {}
        for i, proc in zip((1, 2, 3, 4), early + [late]):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outputs[i] = json.loads(out)
        server.terminate()
        out, _ = server.communicate(timeout=20)
        stats = json.loads(out.strip().splitlines()[-1])
    for i in (1, 2, 3, 4):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
        assert outputs[i]["chunks_written"] == len(header.chunks)
    run(["e2fsck", "-fn", str(tmp_path / "t4")])
    # Requests were merged: far less than one image per receiver went out.
    assert stats["multicast_bytes_sent"] < 2.2 * header.stored_bytes
    assert stats["multicast_merged"] > 0
