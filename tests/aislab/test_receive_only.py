"""The lab's verify-only receiver (a measurement tool): every chunk fetched and hash-checked, nothing written."""


import json
import sys
from pathlib import Path

import pytest

from ais.errors import StreamError
from ais.run import run
from ais.stream.format import read_header
from ais.stream.unicast import UnicastServer
from ais.stream.writer import LocalSource
from aislab.net import ais_command
from aislab.receive_only import receive_only

ROOT = Path(__file__).resolve().parents[2]


class _Corrupting:
    """Flips a bit of each chunk the first time it is asked for."""

    def __init__(self, source):
        self.source, self.seen = source, set()

    def fetch(self, wanted):
        for index, data in self.source.fetch(wanted):
            if index not in self.seen:
                self.seen.add(index)
                data = bytes([data[0] ^ 1]) + data[1:]
            yield index, data


def test_bad_chunks_are_caught_and_fetched_again(small_image):
    header = read_header(small_image)
    result = receive_only(_Corrupting(LocalSource(small_image)), header)
    assert result.bad_chunks == len(header.chunks) and result.rounds == 2 and result.data_bytes == 0


def test_a_source_that_checked_the_hash_is_trusted(small_image):
    header = read_header(small_image)
    source = _Corrupting(LocalSource(small_image))
    source.verifies_sha256 = True  # as MulticastSource declares
    assert receive_only(source, header).bad_chunks == 0


def test_source_that_never_delivers(small_image):
    class Empty:
        def fetch(self, wanted):
            return iter(())

    with pytest.raises(StreamError, match="still missing after"):
        receive_only(Empty(), read_header(small_image), max_rounds=2)


def test_verify_only_receiver_writes_nothing(small_image, tmp_path):
    header = read_header(small_image)
    served = tmp_path / "images"
    served.mkdir()
    (served / f"{header.image_id}.aisimg").write_bytes(small_image.read_bytes())
    server = UnicastServer(served).start()
    try:
        host, port = server.address
        proc = run([sys.executable, "-m", "aislab.receive_only", "--server", f"{host}:{port}",
                    "--image", header.image_id], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
        summary = json.loads(proc.stdout)
        assert summary["chunks_total"] == len(header.chunks) and summary["bad_chunks"] == 0
        assert summary["tcp_bytes"] >= header.stored_bytes
        proc = run(ais_command("image", "get", "--server", f"{host}:{port}", "--image", header.image_id),
                   cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "TARGET" in proc.stderr.upper()  # the product always writes somewhere
    finally:
        server.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
