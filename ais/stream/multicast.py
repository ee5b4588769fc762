"""Frisbee-like multicast chunk transport over UDP: the protocol and the receiver.

What it does: defines the packets (data datagrams of at most 8 KiB carrying
the image tag, chunk index, chunk length and offset, sent to GROUP:PORT;
request bitmaps sent to GROUP:PORT+1) and the sockets; the sender is
`ais.stream.multicast_server.MulticastServer`. `MulticastSource` is the
writer's side: a receive thread joins the group, reassembles chunks in
any order, checks each finished chunk's sha256 against the trusted header and
hands good ones to the writer. It asks (by multicast, so other clients hear
it) for the chunks it lacks; it leaves out chunks someone asked for recently
and chunks whose packets are arriving, and backs off exponentially while no
progress is made. Late joiners simply ask for what they lack. Packet layout:
docs/stream.md.

What it reads: the trusted header (from the control channel) and datagrams.

What it fails on: `MulticastStalled` (a `StreamError`) when no good chunk
arrives for `stall_timeout` seconds while chunks are missing (the caller may
fall back to unicast); `StreamError` when a socket cannot join the group.

What it returns: the source yields (index, stored bytes).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import select
import socket
import struct
import threading
import time
from typing import Iterator, Sequence

from ais.errors import StreamError, TransportStalled
from ais.stream.format import ImageHeader
from ais.stream.catalog import image_tag

log = logging.getLogger("ais.stream.multicast")

COMMON = struct.Struct("<4sBBHQ")  # magic, version, type, reserved, image tag
DATA = struct.Struct("<IIIHH")  # chunk index, chunk stored length, offset, payload length, reserved
REQ = struct.Struct("<II")  # first chunk index, number of bits in the bitmap that follows
MAGIC, VERSION = b"AISM", 1
T_DATA, T_REQUEST = 1, 2
DATAGRAM_MAX = 8192
PAYLOAD_MAX = DATAGRAM_MAX - COMMON.size - DATA.size
REQ_BITS_MAX = (DATAGRAM_MAX - COMMON.size - REQ.size) * 8
# What one request may make the server send: the chunks it newly queues for a request stop once their
# stored bytes reach this (so at most this plus one chunk). Clients split what they ask for to fit.
REQUEST_BYTES_MAX = 4 << 20
PARTS_BYTES_MAX = 64 << 20  # reassembly buffers a receiver keeps; beyond, the stalest chunk is dropped
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module


class MulticastStalled(TransportStalled):
    """The multicast session made no progress (no good chunk) for the stall timeout."""


def open_socket(group: str, port: int, interface: str, ttl: int, rcvbuf: int) -> socket.socket:
    """A UDP socket bound to GROUP:PORT, joined on interface, sending via interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # root: beyond rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        sock.bind((group, port))
        mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except OSError as err:
        sock.close()
        raise StreamError(f"cannot join multicast group {group}:{port} on {interface}: {err}") from err
    return sock


def interface_towards(host: str) -> str:
    """The local IPv4 address this machine uses to reach host: its route's source address.

    This is where a client joins the group when it is not told: the interface
    facing the server, not loopback (which only works when the server is local).
    A UDP connect sends nothing; it only looks up the route.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
        except OSError as err:
            raise StreamError(f"cannot find the local address that routes to {host}: {err}") from err
        return sock.getsockname()[0]


def wire_bytes(length: int) -> int:
    """Bytes one transmission of a chunk of length stored bytes puts on the wire (UDP payloads)."""
    return length + (COMMON.size + DATA.size) * ((length + PAYLOAD_MAX - 1) // PAYLOAD_MAX)


def slot_length(length: int, offset: int) -> int:
    """Payload length of the datagram at offset of a chunk of length bytes, or 0 if no datagram
    starts there: a sender splits a chunk at multiples of PAYLOAD_MAX and nowhere else."""
    if offset % PAYLOAD_MAX or not 0 <= offset < length:
        return 0
    return min(PAYLOAD_MAX, length - offset)


def within_budget(indexes: Sequence[int], sizes: Sequence[int], budget: int = REQUEST_BYTES_MAX) -> Iterator[int]:
    """The indexes (ascending) one request may make the server send: until their sizes reach budget."""
    spent = 0
    for i in sorted(indexes):
        if spent >= budget:
            return
        spent += sizes[i]
        yield i


def encode_requests(tag: int, indexes: Sequence[int], sizes: Sequence[int] | None = None) -> list[bytes]:
    """Request datagrams covering indexes: bitmaps of at most REQ_BITS_MAX bits, and, when the chunks'
    stored sizes are given, at most REQUEST_BYTES_MAX of chunks each (or one larger chunk)."""
    out = []
    indexes = sorted(indexes)
    pos = 0
    while pos < len(indexes):
        first = indexes[pos]
        bits = bytearray((REQ_BITS_MAX + 7) // 8)
        last, spent = first, 0
        while pos < len(indexes) and indexes[pos] - first < REQ_BITS_MAX:
            if sizes is not None:
                if spent and spent + sizes[indexes[pos]] > REQUEST_BYTES_MAX:
                    break
                spent += sizes[indexes[pos]]
            i = indexes[pos] - first
            bits[i >> 3] |= 1 << (i & 7)
            last = indexes[pos]
            pos += 1
        nbits = last - first + 1
        out.append(COMMON.pack(MAGIC, VERSION, T_REQUEST, 0, tag) + REQ.pack(first, nbits) + bytes(bits[: (nbits + 7) // 8]))
    return out


def decode_request(packet: bytes) -> tuple[int, list[int]] | None:
    """(tag, indexes) of a request datagram, or None if it is not one."""
    if len(packet) < COMMON.size + REQ.size:
        return None
    magic, version, kind, _, tag = COMMON.unpack_from(packet)
    if magic != MAGIC or version != VERSION or kind != T_REQUEST:
        return None
    first, nbits = REQ.unpack_from(packet, COMMON.size)
    bits = packet[COMMON.size + REQ.size :]
    nbits = min(nbits, len(bits) * 8)
    return tag, [first + i for i in range(nbits) if bits[i >> 3] >> (i & 7) & 1]


class _Assembly:
    """One chunk being reassembled from datagrams: its buffer and the slots filled so far."""

    __slots__ = ("buf", "slots", "needed")

    def __init__(self, length: int):
        self.buf = bytearray(length)
        self.slots: set[int] = set()
        self.needed = (length + PAYLOAD_MAX - 1) // PAYLOAD_MAX


class MulticastSource:
    """A ChunkSource receiving chunks from a MulticastServer; use as a context manager."""

    verifies_sha256 = True  # every chunk it yields matched the trusted header's sha256

    def __init__(
        self,
        group: str,
        port: int,
        image_id: str,
        header: ImageHeader,
        *,
        interface: str = "127.0.0.1",
        ttl: int | None = None,
        stall_timeout: float = 30.0,
        request_interval: float = 0.1,
        max_backoff: float = 2.0,
        suppress_window: float = 0.5,
    ):
        self.group, self.port, self.header = group, port, header
        self.tag = image_tag(image_id)
        self.image_id = image_id
        self.stall_timeout = stall_timeout
        self.request_interval, self.max_backoff, self.suppress_window = request_interval, max_backoff, suppress_window
        ttl = (0 if interface.startswith("127.") else 1) if ttl is None else ttl
        self._data_sock = open_socket(group, port, interface, ttl, 64 << 20)
        self._req_sock = open_socket(group, port + 1, interface, ttl, 1 << 20)
        self._lock = threading.Lock()
        self._want: set[int] = set()
        self._done: set[int] = set()
        self._parts: dict[int, _Assembly] = {}
        self._requested_at: dict[int, float] = {}
        self._last_seen: dict[int, float] = {}
        self._ready: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sizes = [c.stored_length for c in header.chunks]
        self._parts_bytes = 0
        self.stats = {"datagrams": 0, "bytes": 0, "requests_sent": 0, "bad_chunks": 0, "duplicates": 0,
                      "refused": 0, "dropped_parts": 0}

    def __enter__(self) -> "MulticastSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._data_sock.close()
        self._req_sock.close()

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        with self._lock:
            self._want = set(wanted)
            self._done -= self._want  # asked again: the writer rejected an earlier copy
        if self._thread is None:
            self._thread = threading.Thread(target=self._receive_loop, daemon=True, name="ais-mcast-recv")
            self._thread.start()
        remaining = set(wanted)
        last_progress = time.monotonic()
        while remaining:
            try:
                index, data = self._ready.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() - last_progress > self.stall_timeout:
                    raise MulticastStalled(
                        f"multicast {self.group}:{self.port}: no chunk of image {self.image_id} for "
                        f"{self.stall_timeout:.0f}s, {len(remaining)} of {len(self.header.chunks)} chunks missing"
                    ) from None
                continue
            if index in remaining:
                remaining.discard(index)
                last_progress = time.monotonic()
                yield index, data

    def _receive_loop(self) -> None:
        buf = bytearray(DATAGRAM_MAX + 64)
        view = memoryview(buf)
        next_request = time.monotonic() + random.uniform(0, 0.05)  # jitter lets peers suppress
        backoff = self.request_interval
        progress_since_request = True
        socks = [self._data_sock, self._req_sock]
        while not self._stop.is_set():
            ready, _, _ = select.select(socks, [], [], 0.05)
            now = time.monotonic()
            if self._data_sock in ready:
                while True:
                    try:
                        n = self._data_sock.recv_into(buf, len(buf), socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    if self._take_datagram(view[:n], now):
                        progress_since_request = True
            if self._req_sock in ready:
                self._hear_requests(now)
            if now >= next_request:
                sent = self._request_missing(now)
                if sent:
                    backoff = self.request_interval if progress_since_request else min(backoff * 2, self.max_backoff)
                    progress_since_request = False
                next_request = now + backoff

    def _take_datagram(self, packet: memoryview, now: float) -> bool:
        """Store one data datagram; True if it completed a good chunk.

        Only a datagram of exactly the size its slot has is taken (`slot_length`); it replaces
        whatever an earlier datagram put in that slot, so forged bytes that came first are
        overwritten by the real ones. A finished chunk that fails its sha256 is dropped and asked
        for again at the next request."""
        if len(packet) < COMMON.size + DATA.size:
            return False
        magic, version, kind, _, tag = COMMON.unpack_from(packet)
        if magic != MAGIC or version != VERSION or kind != T_DATA or tag != self.tag:
            return False
        index, length, offset, plen, _ = DATA.unpack_from(packet, COMMON.size)
        payload = packet[COMMON.size + DATA.size :]
        self.stats["datagrams"] += 1
        self.stats["bytes"] += len(packet)
        if index >= len(self._sizes) or length != self._sizes[index] or plen != len(payload) \
                or plen != slot_length(length, offset):
            self.stats["refused"] += 1
            return False
        if index in self._done:
            self.stats["duplicates"] += 1
            return False
        self._last_seen[index] = now
        part = self._parts.pop(index, None)  # re-inserted last: the dict runs stalest first
        if part is None:
            part = _Assembly(length)
            self._parts_bytes += length
            self._drop_stalest_parts()
        self._parts[index] = part
        part.buf[offset : offset + plen] = payload
        part.slots.add(offset)
        if len(part.slots) < part.needed:
            return False
        del self._parts[index]
        self._parts_bytes -= length
        stored = bytes(part.buf)
        if hashlib.sha256(stored).hexdigest() != self.header.chunks[index].sha256:
            self.stats["bad_chunks"] += 1  # corrupt or forged: ask again at once
            self._last_seen.pop(index, None)
            self._requested_at.pop(index, None)
            return False
        with self._lock:
            self._done.add(index)
            wanted = index in self._want
        if wanted:
            self._ready.put((index, stored))
        return True

    def _drop_stalest_parts(self) -> None:
        """Keep reassembly buffers under PARTS_BYTES_MAX: drop the chunks that heard nothing longest
        (a real session fills few at once; forged datagrams must not make us hold the whole image)."""
        while self._parts_bytes > PARTS_BYTES_MAX and len(self._parts) > 0:
            index, part = next(iter(self._parts.items()))
            del self._parts[index]
            self._parts_bytes -= len(part.buf)
            self._last_seen.pop(index, None)
            self.stats["dropped_parts"] += 1

    def _hear_requests(self, now: float) -> None:
        while True:
            try:
                packet = self._req_sock.recv(DATAGRAM_MAX, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            decoded = decode_request(packet)
            if decoded and decoded[0] == self.tag:
                asked = [i for i in decoded[1] if i < len(self._sizes)]
                for i in within_budget(asked, self._sizes):
                    self._requested_at[i] = now  # someone asked: the server will send it

    def _request_missing(self, now: float) -> bool:
        with self._lock:
            missing = self._want - self._done
        asked = [
            i
            for i in missing
            if now - self._requested_at.get(i, -1e9) > self.suppress_window
            and now - self._last_seen.get(i, -1e9) > self.suppress_window / 2
        ]
        if not asked:
            return False
        for packet in encode_requests(self.tag, asked, self._sizes):
            try:
                self._req_sock.sendto(packet, (self.group, self.port + 1))
            except OSError as err:
                log.debug("request sendto failed: %s", err)
        for i in asked:
            self._requested_at[i] = now
        self.stats["requests_sent"] += 1
        return True
