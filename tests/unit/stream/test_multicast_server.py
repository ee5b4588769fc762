"""The multicast server on loopback, in-process: it outlives an unexpected error in its loop."""

from __future__ import annotations

import random
import shutil

from ais.stream.format import read_header
from ais.stream.multicast import MulticastSource
from ais.stream.multicast_server import MulticastServer
from ais.stream.catalog import ImageCatalog


def test_server_loop_survives_an_unexpected_error(small_image, tmp_path):
    header = read_header(small_image)
    shutil.copy(small_image, tmp_path / f"{header.image_id}.aisimg")
    catalog = ImageCatalog(tmp_path)
    real, calls = catalog.by_tag, []

    def flaky(tag):  # the first lookup blows up (a bug, a transient failure)
        calls.append(tag)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(tag)

    catalog.by_tag = flaky
    group, port = "239.255.42.11", 7500 + random.randrange(200) * 2
    server = MulticastServer(catalog, group, port, interface="127.0.0.1", rate=50e6).start()
    try:
        with MulticastSource(group, port, header.image_id, header, interface="127.0.0.1",
                             stall_timeout=10) as source:
            got = dict(source.fetch(range(len(header.chunks))))
    finally:
        server.stop()
    assert sorted(got) == list(range(len(header.chunks))) and len(calls) >= 2
    assert server.stats["chunks_sent"] >= len(header.chunks)
