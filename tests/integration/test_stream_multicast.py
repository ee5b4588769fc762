"""Multicast streaming between network namespaces on a bridge: 3 receivers and a late joiner."""

import json
import time

import pytest

from ais.run import run
from ais.stream.format import read_header
from ais.stream.pack import pack
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
        server = lab.spawn(0, lab.ais(0, "image", "serve-stream", str(images), "--listen",
                                         f"{lab.address(0)}:{TCP_PORT}", "--multicast", f"{GROUP}:{DATA_PORT}",
                                         "--interface", lab.address(0), "--rate", "2", "--seconds", "60"))
        _wait_listening(server)

        def receiver(i):
            argv = lab.ais(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}", "--image", "img-m",
                              "--multicast", f"{GROUP}:{DATA_PORT}", "--interface", lab.address(i),
                              "--stall-timeout", "20", "--json", "--create-file", str(tmp_path / f"t{i}"))
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
    with NetLab(3) as lab:
        server = lab.spawn(0, lab.ais(0, "image", "serve-stream", str(served), "--listen",
                                         f"{lab.address(0)}:{TCP_PORT}", "--multicast", f"{GROUP}:{DATA_PORT}",
                                         "--interface", lab.address(0), "--rate", "2", "--seconds", "60"))
        _wait_listening(server)

        def receiver(i, image_id, target):
            return lab.spawn(i, lab.ais(i, "image", "get", "--server", f"{lab.address(0)}:{TCP_PORT}",
                                           "--image", image_id, "--multicast", f"{GROUP}:{DATA_PORT}",
                                           "--interface", lab.address(i), "--stall-timeout", "10", "--json", "--create-file",
                                           str(target)))

        procs = [receiver(i, "img-m", tmp_path / f"t{i}") for i in (1, 2)]
        deadline = time.monotonic() + 20  # unlink once the session is under way (the targets grow)
        while time.monotonic() < deadline and not all((tmp_path / f"t{i}").exists() for i in (1, 2)):
            time.sleep(0.05)
        time.sleep(0.5)
        (served / "img-m.aisimg").unlink()
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert json.loads(out)["chunks_written"] == len(header.chunks)
        after = receiver(1, "img-n", tmp_path / "n1")  # the server still serves the rest
        out, err = after.communicate(timeout=60)
        assert after.returncode == 0, err
        assert server.poll() is None
        server.terminate()
        out, _ = server.communicate(timeout=20)
        stats = json.loads(out.strip().splitlines()[-1])
    for i in (1, 2):
        assert (tmp_path / f"t{i}").read_bytes() == reference.read_bytes()
    run(["e2fsck", "-fn", str(tmp_path / "n1")])
    assert stats["multicast_chunks_sent"] >= len(header.chunks)
