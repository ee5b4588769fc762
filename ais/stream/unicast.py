"""Unicast chunk transport over TCP: a server for .aisimg files and a client source.

What it does: `UnicastServer` listens on a TCP port and answers two requests
(docs/stream.md has the bytes): HEADER (the image's header JSON as stored) and
CHUNKS (a bitmap of wanted chunk indexes; the server sends each chunk as a
frame with `os.sendfile`, then an end frame; a full send buffer is waited
out, up to the I/O timeout, so links slower than the server and clients
that write slowly are served, and only a client that takes nothing for the
whole timeout, or closes, is dropped). One thread per connection, so
many clients are served at once. `UnicastSource` is the writer's side: it asks
for the chunks still wanted, checks each frame against the trusted header
(index requested, exact stored length) and yields them; hashes are checked by
the writer, which asks again for chunks that fail. A dropped or truncated
connection is retried (reconnect, ask only for what is still missing) with
exponential back-off, the attempt count reset whenever a chunk arrives.

What it reads: images through `ais.stream.catalog.ImageCatalog` (a directory of
.aisimg files, looked up by image id); on the client side, the header the caller
trusts.

What it fails on: `StreamError` when the server does not know the image, the
server keeps failing after the retries ("gave up after N attempts: ..."), or a
fetched header does not match the pinned sha256.

What it returns: chunks as (index, stored bytes); `fetch_header` returns an
`ImageHeader`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from ais.errors import StreamError
from ais.stream.catalog import ImageCatalog
from ais.stream.format import ImageHeader

log = logging.getLogger("ais.stream.unicast")

REQUEST = struct.Struct("<4sBBHII")  # magic, version, op, image id length, chunk count, bitmap bytes
RESPONSE = struct.Struct("<4sBBHQ")  # magic, version, status, message length, count or header length
FRAME = struct.Struct("<II")  # chunk index, stored length
REQ_MAGIC, RESP_MAGIC, VERSION = b"AISQ", b"AISR", 1
OP_HEADER, OP_CHUNKS = 1, 2
ST_OK, ST_UNKNOWN_IMAGE, ST_BAD_REQUEST = 0, 1, 2
END_INDEX = 0xFFFFFFFF
MAX_ID = 256
MAX_BITMAP = 1 << 21  # 16 M chunks
def encode_bitmap(indexes: Sequence[int], count: int) -> bytes:
    """Bit i (byte i // 8, bit i % 8, least significant first) set for each wanted index."""
    bits = bytearray((count + 7) // 8)
    for i in indexes:
        bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits)


def decode_bitmap(bits: bytes, count: int) -> list[int]:
    return [i for i in range(min(count, len(bits) * 8)) if bits[i >> 3] >> (i & 7) & 1]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


# ------------------------------------------------------------------ server


class _Handler(socketserver.BaseRequestHandler):
    server: "_TCPServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(sock, True)
        try:
            self._serve(sock)
        except (OSError, ConnectionError) as err:
            log.debug("client %s went away: %s", self.client_address, err)
        finally:
            self.server.track(sock, False)

    def _serve(self, sock: socket.socket) -> None:
        magic, version, op, id_len, count, bitmap_len = REQUEST.unpack(recv_exact(sock, REQUEST.size))
        if magic != REQ_MAGIC or version != VERSION or id_len > MAX_ID or bitmap_len > MAX_BITMAP:
            return self._refuse(sock, ST_BAD_REQUEST, "malformed request")
        image_id = recv_exact(sock, id_len).decode("utf-8", "replace")
        bitmap = recv_exact(sock, bitmap_len)
        entry = self.server.catalog.lookup(image_id)
        if entry is None:
            return self._refuse(sock, ST_UNKNOWN_IMAGE, f"unknown image {image_id}")
        header, data_offset, raw_header = entry.header, entry.data_offset, entry.raw_header
        if op == OP_HEADER:
            sock.sendall(RESPONSE.pack(RESP_MAGIC, VERSION, ST_OK, 0, len(raw_header)) + raw_header)
            return
        if op != OP_CHUNKS or count != len(header.chunks):
            return self._refuse(sock, ST_BAD_REQUEST, f"image {image_id} has {len(header.chunks)} chunks, not {count}")
        wanted = decode_bitmap(bitmap, count)
        sock.sendall(RESPONSE.pack(RESP_MAGIC, VERSION, ST_OK, 0, len(wanted)))
        for index in wanted:
            chunk = header.chunks[index]
            sock.sendall(FRAME.pack(index, chunk.stored_length))
            _sendfile_all(sock, entry.file.fileno(), data_offset + chunk.offset, chunk.stored_length)
            self.server.count_sent(FRAME.size + chunk.stored_length)
        sock.sendall(FRAME.pack(END_INDEX, 0))

    def _refuse(self, sock: socket.socket, status: int, message: str) -> None:
        text = message.encode()[:1000]
        sock.sendall(RESPONSE.pack(RESP_MAGIC, VERSION, status, len(text), 0) + text)


def _sendfile_all(sock: socket.socket, fd: int, offset: int, length: int) -> None:
    """Send `length` bytes of fd from `offset`, waiting (up to the socket's timeout) whenever the send
    buffer is full.

    A socket with a timeout is non-blocking underneath: raw `os.sendfile` on it raises EAGAIN as soon as
    the buffer fills, which happens on any link slower than this server (or to a client whose disk is
    slow). That is back-pressure, not a client that went away: wait until the socket can take more.
    A client that takes nothing for the whole timeout raises TimeoutError; a closed or reset connection
    raises from sendfile itself (EPIPE, ECONNRESET).
    """
    timeout = sock.gettimeout()
    writable = select.poll()
    writable.register(sock, select.POLLOUT)
    while length > 0:
        try:
            n = os.sendfile(sock.fileno(), fd, offset, length)
        except BlockingIOError:
            if not writable.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError(f"client took no data for {timeout:g}s") from None
            continue
        if n == 0:
            raise ConnectionError("sendfile sent nothing (image file shrank?)")
        offset += n
        length -= n


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, catalog: ImageCatalog, io_timeout: float):
        self.catalog = catalog
        self.io_timeout = io_timeout
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._socks.add if add else self._socks.discard)(sock)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._socks)

    def count_sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def close_clients(self) -> None:
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class UnicastServer:
    """Serve .aisimg files from a directory over TCP; start() then stop()."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0, *, io_timeout: float = 60.0):
        self.catalog = ImageCatalog(directory)
        self._server = _TCPServer((host, port), self.catalog, io_timeout)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    @property
    def bytes_sent(self) -> int:
        return self._server.bytes_sent

    @property
    def open_connections(self) -> int:
        """Client connections being served right now."""
        return self._server.open_connections()

    def start(self) -> "UnicastServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:  # shutdown() waits for a serve loop: there is none before start()
            self._server.shutdown()
        self._server.close_clients()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=10)


# ------------------------------------------------------------------ client


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


def _send_request(sock: socket.socket, op: int, image_id: str, count: int = 0, bitmap: bytes = b"") -> int:
    ident = image_id.encode()
    sock.sendall(REQUEST.pack(REQ_MAGIC, VERSION, op, len(ident), count, len(bitmap)) + ident + bitmap)
    magic, version, status, msg_len, value = RESPONSE.unpack(recv_exact(sock, RESPONSE.size))
    if magic != RESP_MAGIC or version != VERSION:
        raise ConnectionError("not an AIS stream server (bad response magic)")
    message = recv_exact(sock, msg_len).decode("utf-8", "replace") if msg_len else ""
    if status == ST_UNKNOWN_IMAGE:
        raise StreamError(f"server does not have image {image_id}: {message}")
    if status != ST_OK:
        raise StreamError(f"server refused the request for image {image_id}: {message}")
    return value


def fetch_header(address: tuple[str, int], image_id: str, *, sha256: str | None = None, timeout: float = 30.0) -> ImageHeader:
    """Ask the server for an image's header; if sha256 is given it must match."""
    try:
        with _connect(address, timeout) as sock:
            length = _send_request(sock, OP_HEADER, image_id)
            if length > 64 << 20:
                raise StreamError(f"server sent an absurd header length {length}")
            raw = recv_exact(sock, length)
    except (OSError, ConnectionError) as err:
        raise StreamError(f"cannot get the header of image {image_id} from {address[0]}:{address[1]}: {err}") from err
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise StreamError(f"header of image {image_id} from {address[0]}:{address[1]} does not match the pinned sha256")
    return ImageHeader.from_json(raw)


class UnicastSource:
    """A ChunkSource that fetches chunks from a UnicastServer."""

    def __init__(
        self,
        address: tuple[str, int],
        image_id: str,
        header: ImageHeader,
        *,
        retries: int = 5,
        backoff: float = 0.2,
        timeout: float = 30.0,
    ):
        self.address, self.image_id, self.header = address, image_id, header
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.connections = 0
        self.bytes_received = 0

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        remaining = set(wanted)
        failures = 0
        while remaining:
            try:
                for index, data in self._one_connection(sorted(remaining)):
                    remaining.discard(index)
                    failures = 0  # progress: the retry budget is for consecutive failures
                    yield index, data
                return  # the server said "end": the writer asks again for whatever is missing
            except (OSError, ConnectionError, ValueError) as err:
                failures += 1
                if failures > self.retries:
                    raise StreamError(
                        f"streaming image {self.image_id} from {self.address[0]}:{self.address[1]}: "
                        f"gave up after {failures} attempts, {len(remaining)} chunks missing: {err}"
                    ) from err
                delay = min(self.backoff * 2 ** (failures - 1), 5.0)
                log.warning("connection to %s failed (%s); retrying in %.1fs", self.address, err, delay)
                time.sleep(delay)

    def _one_connection(self, wanted: list[int]) -> Iterator[tuple[int, bytes]]:
        count = len(self.header.chunks)
        asked = set(wanted)
        self.connections += 1
        with _connect(self.address, self.timeout) as sock:
            _send_request(sock, OP_CHUNKS, self.image_id, count, encode_bitmap(wanted, count))
            while True:
                index, length = FRAME.unpack(recv_exact(sock, FRAME.size))
                if index == END_INDEX:
                    return
                if index not in asked or length != self.header.chunks[index].stored_length:
                    raise ValueError(f"unexpected frame (chunk {index}, {length} bytes)")
                data = recv_exact(sock, length)
                self.bytes_received += FRAME.size + length
                yield index, data
