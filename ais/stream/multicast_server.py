"""The multicast sender: requested chunks of the catalog's images, to the group.

What it does: `MulticastServer` listens for chunk requests on GROUP:PORT+1 and
sends the requested chunks to GROUP:PORT, each chunk split into datagrams
(`ais.stream.multicast` defines the packets). Requests are merged: a chunk
already queued is not queued twice, so many clients that miss the same chunk
cost one transmission. One request queues at most `REQUEST_BYTES_MAX` of
chunks (plus the one that crosses it); the rest of it is ignored, so a small
unauthenticated datagram cannot make the server send a whole image. The send rate is capped by a token bucket (bytes per
second, configurable). A session keeps the image it serves: if a rebuild
removes the file while clients are still asking for its chunks, the server
finishes from the open file for as long as requests keep coming
(`session_hold` seconds since the last one); an image replaced by a new file
is served from the new one.

What it reads: images through `ImageCatalog`. What it fails on: `StreamError`
when a socket cannot be opened; errors while sending are logged and the loop
goes on (clients ask again). What it returns: counts of bytes, datagrams,
requests, merges and chunks ignored over a request's budget in `stats`.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import threading
import time

from ais.stream.multicast import (
    COMMON, DATA, DATAGRAM_MAX, MAGIC, PAYLOAD_MAX, REQUEST_BYTES_MAX, T_DATA, VERSION, decode_request, open_socket,
)
from ais.stream.catalog import ImageCatalog, ServedImage

log = logging.getLogger("ais.stream.multicast")

BURST = 256 << 10  # token bucket depth: bytes that may go out back to back
SESSION_HOLD = 60.0  # seconds a removed image stays served after the last request for it

class MulticastServer:
    """Send requested chunks of the catalog's images to a multicast group."""

    def __init__(
        self,
        catalog: ImageCatalog,
        group: str,
        port: int,
        *,
        interface: str = "127.0.0.1",
        rate: float = 100e6,
        ttl: int | None = None,
        session_hold: float = SESSION_HOLD,
    ):
        self.catalog, self.group, self.port, self.rate = catalog, group, port, rate
        self.session_hold = session_hold
        self._held: dict[int, list] = {}  # tag -> [ServedImage, last request (monotonic), removed?]
        ttl = (0 if interface.startswith("127.") else 1) if ttl is None else ttl
        self._req_sock = open_socket(group, port + 1, interface, ttl, 4 << 20)
        self._send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._send_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        self._send_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        self._send_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self._send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self._queue: collections.OrderedDict[tuple[int, int], None] = collections.OrderedDict()
        self._current: list | None = None  # [tag, index, data, offset]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"bytes_sent": 0, "datagrams": 0, "requests": 0, "merged": 0, "chunks_sent": 0,
                      "over_budget": 0}

    def start(self) -> "MulticastServer":
        self._thread = threading.Thread(target=self._loop, daemon=True, name="ais-mcast-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._req_sock.close()
        self._send_sock.close()

    def _loop(self) -> None:
        self._tokens, self._last = float(BURST), time.monotonic()
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - one bad moment must not end the service for everyone
                log.exception("multicast server: unexpected error; dropping the current chunk and going on")
                self._current = None
                self._stop.wait(0.1)

    def _step(self) -> None:
        idle = self._current is None and not self._queue
        self._take_requests(timeout=0.1 if idle else 0.0)
        if self._current is None and not self._start_next_chunk():
            return
        now = time.monotonic()
        self._tokens = min(BURST, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < DATAGRAM_MAX:
            time.sleep((DATAGRAM_MAX - self._tokens) / self.rate)
            return
        self._tokens -= self._send_one_datagram()

    def _image(self, tag: int, *, request: bool) -> ServedImage | None:
        """The image a tag names: the session's own while its file is current (one stat), else the
        catalog's (a replaced file is reopened), else, for a file removed while clients are still
        asking (`session_hold`), the session's open file."""
        now = time.monotonic()
        held = self._held.get(tag)
        if held is not None and now - held[1] > self.session_hold:
            del self._held[tag]  # nobody asked for a while: the session is over
            held = None
        if held is not None and (held[2] or held[0].is_current()):
            if request:
                held[1] = now
            return held[0]
        entry = self.catalog.by_tag(tag)
        if entry is not None:
            self._held[tag] = [entry, now, False]
            return entry
        if held is None:
            return None
        log.info("image %s was removed; finishing its multicast session from the open file", held[0].header.image_id)
        held[2] = True
        if request:
            held[1] = now
        return held[0]

    def _take_requests(self, timeout: float) -> None:
        ready, _, _ = select.select([self._req_sock], [], [], timeout)
        while ready:
            try:
                packet = self._req_sock.recv(DATAGRAM_MAX, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self._queue_request(packet)

    def _queue_request(self, packet: bytes) -> None:
        decoded = decode_request(packet)
        if decoded is None:
            return
        tag, indexes = decoded
        entry = self._image(tag, request=True)
        if entry is None:
            return
        chunks = entry.header.chunks
        self.stats["requests"] += 1
        current = self._current
        queued = 0  # stored bytes this request added to the queue
        for i in sorted(indexes):
            if not 0 <= i < len(chunks):
                continue
            key = (tag, i)
            in_flight = current is not None and (current[0], current[1]) == key and current[3] == 0
            if key in self._queue or in_flight:
                self.stats["merged"] += 1  # someone else's request already covers it
            elif queued >= REQUEST_BYTES_MAX:
                self.stats["over_budget"] += 1  # one request makes the server send a bounded amount
            else:
                self._queue[key] = None
                queued += chunks[i].stored_length

    def _start_next_chunk(self) -> bool:
        if not self._queue:
            return False
        (tag, index), _ = self._queue.popitem(last=False)
        entry = self._image(tag, request=False)
        if entry is None:
            return False
        chunk = entry.header.chunks[index]
        try:
            data = os.pread(entry.file.fileno(), chunk.stored_length, entry.data_offset + chunk.offset)
        except OSError as err:  # the disk failed us; the clients will ask again
            log.warning("cannot read chunk %d of %s: %s", index, entry.path, err)
            return False
        self._current = [tag, index, memoryview(data), 0]
        return True

    def _send_one_datagram(self) -> int:
        tag, index, data, offset = self._current
        payload = data[offset : offset + PAYLOAD_MAX]
        packet = b"".join(
            (COMMON.pack(MAGIC, VERSION, T_DATA, 0, tag), DATA.pack(index, len(data), offset, len(payload), 0), payload)
        )
        self.stats["bytes_sent"] += len(packet)  # counted first: whatever is on the wire is in the count
        self.stats["datagrams"] += 1
        try:
            self._send_sock.sendto(packet, (self.group, self.port))
        except OSError as err:  # ENOBUFS under pressure: the client will ask again
            log.debug("sendto failed: %s", err)
        offset += len(payload)
        if offset >= len(data):
            self._current = None
            self.stats["chunks_sent"] += 1
        else:
            self._current[3] = offset
        return len(packet)
