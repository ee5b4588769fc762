"""StreamServer: serve the images of a directory by id, over TCP and multicast.

What it does: bundles a `UnicastServer` (chunk and header requests over TCP)
and, when a group is given, a `MulticastServer` on the same catalog, behind
one start()/stop() pair, so `ais serve` can embed it and tests can run it.

What it reads: `<directory>/*.aisimg` (looked up by image id, see
`ImageCatalog`).

What it fails on: `StreamError` when the multicast group cannot be joined;
OSError (port in use) is turned into `StreamError` too.

What it returns: `address` (host, port) of the TCP side, and `stats()`;
`stop()` also logs the final statistics (INFO, one line "stream statistics:
{json}") so a server run as a process (`ais serve`) leaves them in its log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ais.errors import StreamError
from ais.stream.multicast_server import MulticastServer
from ais.stream.unicast import UnicastServer

log = logging.getLogger("ais.stream.server")


class StreamServer:
    """Images of one directory, served by id over TCP (and multicast if asked)."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        multicast: tuple[str, int] | None = None,
        multicast_interface: str = "127.0.0.1",
        rate: float = 100e6,
    ):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise StreamError(f"image directory {self.directory} does not exist")
        try:
            self.unicast = UnicastServer(self.directory, host, port)
        except OSError as err:
            raise StreamError(f"cannot listen on {host}:{port}: {err}") from err
        self.multicast = None
        if multicast is not None:
            group, mport = multicast
            self.multicast = MulticastServer(
                self.unicast.catalog, group, mport, interface=multicast_interface, rate=rate
            )

    @property
    def address(self) -> tuple[str, int]:
        return self.unicast.address

    def start(self) -> "StreamServer":
        self.unicast.start()
        if self.multicast:
            self.multicast.start()
        return self

    def stop(self) -> None:
        self.unicast.stop()
        if self.multicast:
            self.multicast.stop()
        log.info("stream statistics: %s", json.dumps(self.stats(), sort_keys=True))

    def stats(self) -> dict:
        out = {"unicast_bytes_sent": self.unicast.bytes_sent}
        if self.multicast:
            out.update({f"multicast_{k}": v for k, v in self.multicast.stats.items()})
        return out

    def __enter__(self) -> "StreamServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
