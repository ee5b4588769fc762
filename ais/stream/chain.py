"""Pipelined chain transport (Kastafior-like): each client forwards every chunk to the next while writing it.

What it does: `ChainSource` is a ChunkSource (for `ais.stream.writer.write_image`)
and a node of the chain the server orders (`ais.server.chain.ChainBoard`,
reached through `join`, a callable that POSTs to /v1/hosts/<name>/chain).
The node listens on `listen_ip` (a free port) for ONE downstream at a time
(a newer one replaces the older, which is told so: it was reported lost, and
it ends its live stream and fetches the rest from the server); a downstream's hello must carry the image
id and the chain's key (compared in constant time), else it is refused,
logged, and gets no chunk. In the first round the node asks the server where
to get the image from: an upstream peer, or (upstream null: it is the head)
the server's TCP stream (`ais.stream.unicast`). Every chunk received is
checked against the header's sha256 BEFORE it is forwarded or handed to the
writer. Forwarding is live: a downstream gets what this node receives after
the downstream connected, never what came before. It goes through a bounded
queue to a forwarding thread: a slower downstream slows this node and so its
upstream (a pipeline); a dead one is dropped (send error, or nothing taken for
`stall_timeout`) and this node goes on. When the head has everything, an end
marker flows down the chain; each node forwards it, tells the server it is
done ("leave") and ends its first round. An upstream that dies (EOF, reset,
nothing for `stall_timeout`), refuses the hello, sends a malformed frame, a
chunk failing its sha256 or a chunk of another image is dropped (logged) and
reported to the server (`lost`), which names the nearest live member before
it (the gap closes; null: the server's stream, and this node becomes the
head of the rest of the chain). In later rounds (what the first round missed:
chunks sent while this node was reconnecting or before it joined) the node
fetches from the server's TCP stream and forwards nothing: every node fetches
its own gaps. docs/stream.md ("Chain") has the bytes.

What it reads: the trusted header, the server's answers, frames from peers.

What it fails on: `ChainStalled` (a `TransportStalled`) when no good chunk arrived
for `stall_timeout` and a second upstream failed too (the caller may fall
back to unicast); `StreamError` for a malformed answer of the server, a
listening socket that cannot be opened, or the server's TCP stream failing;
whatever `join` raises (`ClientError` when the server cannot be reached).

What it returns: (index, stored bytes) to the writer; `stats` (dict of counts).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import re
import socket
import struct
import threading
import time
from typing import Callable, Iterator, Sequence

from ais.errors import AisError, StreamError, TransportStalled
from ais.stream.format import ImageHeader
from ais.stream.unicast import FRAME, UnicastSource, recv_exact

log = logging.getLogger("ais.stream.chain")

HELLO = struct.Struct("<4sBB32sH")  # magic, version, kind, chain key (32 bytes), image id length; then the id
REPLY = struct.Struct("<4sBBH")  # magic, version, status, message length; then the message
MAGIC, VERSION, KIND_HELLO = b"AISC", 1, 1
ST_OK, ST_REFUSED = 0, 1
END_INDEX = 0xFFFFFFFF  # the end marker: the head has sent everything
REPLACED_INDEX = 0xFFFFFFFE  # "another downstream took your place": the server was told you were lost
MAX_ID = 256
HELLO_TIMEOUT = 10.0  # a connection must say who it is within this
MAX_GREETINGS = 16  # connections being greeted at once; more are closed unread
ADDRESS = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})")
_END, _STOP = object(), object()


class ChainStalled(TransportStalled):
    """The chain made no progress (no good chunk) for the stall timeout, across reconnects."""


class _Lost(Exception):
    """The current upstream is no use any more (why is the message)."""


def parse_address(text: str) -> tuple[str, int]:
    m = ADDRESS.fullmatch(text or "")
    if not m or int(m.group(2)) > 65535:
        raise StreamError(f"not an IPv4 address and port: {str(text)[:60]!r}")
    return m.group(1), int(m.group(2))


def hello_bytes(image_id: str, key: bytes) -> bytes:
    ident = image_id.encode()
    return HELLO.pack(MAGIC, VERSION, KIND_HELLO, key, len(ident)) + ident


def reply_bytes(status: int, message: str = "") -> bytes:
    text = message.encode()[:1000]
    return REPLY.pack(MAGIC, VERSION, status, len(text)) + text


def recv_into_all(sock: socket.socket, buf: bytearray) -> None:
    view, got = memoryview(buf), 0
    while got < len(buf):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError(f"connection closed after {got} of {len(buf)} bytes")
        got += n


class ChainSource:
    """A node of the chain and the writer's ChunkSource; use as a context manager."""

    verifies_sha256 = True  # every chunk it yields matched the trusted header's sha256

    def __init__(self, header: ImageHeader, join: Callable[[dict], dict], server_tcp: str | tuple[str, int], *,
                 listen_ip: str, stall_timeout: float = 30.0, downstream_wait: float = 5.0, queue_depth: int = 8):
        self.header, self.join, self.image_id = header, join, header.image_id
        self.server = parse_address(server_tcp) if isinstance(server_tcp, str) else tuple(server_tcp)
        self.stall_timeout, self.downstream_wait = stall_timeout, downstream_wait
        self.stats = {"upstream_chunks": 0, "head_chunks": 0, "gap_chunks": 0, "unicast_chunks": 0,
                      "forwarded_chunks": 0, "forwarded_bytes": 0, "reconnects": 0, "bad_chunks": 0,
                      "refused_hellos": 0, "downstreams": 0}
        try:
            self._listener = socket.create_server((listen_ip, 0), backlog=16)
        except OSError as err:
            raise StreamError(f"cannot listen for a chain downstream on {listen_ip}: {err}") from err
        self._listener.settimeout(0.5)  # accept() wakes up to see close()
        self.listen = f"{listen_ip}:{self._listener.getsockname()[1]}"
        self._key: bytes | None = None
        self._key_known = threading.Event()
        self._down: socket.socket | None = None  # the forwarder's downstream (only it sends on it)
        self._pending: socket.socket | None = None  # a greeted downstream the forwarder switches to
        self._down_lock = threading.Lock()
        self._got_downstream = threading.Event()
        self._greeting = threading.BoundedSemaphore(MAX_GREETINGS)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_depth)
        self._stop = threading.Event()
        self._live_over = False  # the end marker passed: a new downstream gets it at once
        self._joined = self._left = False
        self._rounds = 0
        self._unicast = UnicastSource(self.server, self.image_id, header, timeout=stall_timeout)
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True, name="ais-chain-accept"),
                         threading.Thread(target=self._forward_loop, daemon=True, name="ais-chain-forward")]
        for t in self._threads:
            t.start()

    def __enter__(self) -> "ChainSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the writer's side

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        self._rounds += 1
        if self._rounds == 1:
            return self._live(set(wanted))
        return self._gaps(wanted)

    def _live(self, remaining: set[int]) -> Iterator[tuple[int, bytes]]:
        """The first round: the chain's live stream, until the end marker (forwarded, then leave)."""
        answer = self._ask(None)
        if answer["downstream"]:  # the rest of the chain connects first, so nobody misses the start
            if not self._got_downstream.wait(self.downstream_wait):
                log.info("chain: no downstream connected within %g s; starting without it", self.downstream_wait)
        upstream, last_progress, failures = answer["upstream"], time.monotonic(), 0
        while upstream is not None:
            try:
                for index, data in self._follow(upstream):
                    last_progress, failures = time.monotonic(), 0
                    if index in remaining:
                        remaining.discard(index)
                        yield index, data
                break  # the end marker
            except _Lost as why:
                failures += 1
                log.warning("chain: dropping upstream %s: %s", upstream, why)
                if failures >= 2 and time.monotonic() - last_progress > self.stall_timeout:
                    raise ChainStalled(
                        f"chain of image {self.image_id[:12]}: no good chunk for {self.stall_timeout:g} s "
                        f"({failures} upstreams failed, the last {upstream}: {why}); "
                        f"{len(remaining)} of {len(self.header.chunks)} chunks missing") from None
                self.stats["reconnects"] += 1
                if failures > 2:
                    time.sleep(min(0.1 * 2 ** (failures - 3), 2.0))  # the server keeps naming dead ones
                upstream = self._ask(upstream)["upstream"]
        else:
            yield from self._head(remaining)
        self._forward(_END)
        try:
            self._leave()
        except (AisError, OSError) as err:  # the server forgets this node by lease anyway
            log.warning("chain: could not tell the server this node is done: %s", err)

    def _head(self, remaining: set[int]) -> Iterator[tuple[int, bytes]]:
        """Head of the chain: what this node still wants, from the server's stream, forwarded live."""
        log.info("chain: head of the chain for image %s: %d chunks from the server", self.image_id[:12],
                 len(remaining))
        for index, data in self._unicast.fetch(sorted(remaining)):
            if not self._good(index, data):
                continue  # the writer asks again in a later round
            self.stats["head_chunks"] += 1
            self.stats["unicast_chunks"] += 1
            self._forward((index, data))
            yield index, data

    def _gaps(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """Later rounds: this node's own gaps, from the server's stream; forwarded to nobody."""
        log.info("chain: fetching %d missed chunks of image %s from the server", len(wanted), self.image_id[:12])
        for index, data in self._unicast.fetch(wanted):
            if self._good(index, data):
                self.stats["gap_chunks"] += 1
                self.stats["unicast_chunks"] += 1
                yield index, data

    def _good(self, index: int, data) -> bool:
        chunk = self.header.chunks[index]
        if len(data) == chunk.stored_length and hashlib.sha256(data).hexdigest() == chunk.sha256:
            return True
        self.stats["bad_chunks"] += 1
        log.warning("chain: chunk %d failed its sha256 check", index)
        return False

    # ------------------------------------------------------------ upstream

    def _follow(self, upstream: str) -> Iterator[tuple[int, bytearray]]:
        """Chunks from upstream until its end marker; _Lost when it is no use any more."""
        try:
            sock = socket.create_connection(parse_address(upstream), timeout=self.stall_timeout)
        except OSError as err:
            raise _Lost(f"cannot connect: {err}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._greet_upstream(sock)
            log.info("chain: following %s", upstream)
            while True:
                index, length = FRAME.unpack(recv_exact(sock, FRAME.size))
                if index == END_INDEX:
                    log.info("chain: end of the stream from %s", upstream)
                    return
                if index == REPLACED_INDEX:  # we were reported lost: the rest comes from the server
                    log.warning("chain: %s gave our place to another downstream; the rest of the live "
                                "stream is not ours", upstream)
                    return
                if index >= len(self.header.chunks) or length != self.header.chunks[index].stored_length:
                    raise _Lost(f"malformed frame (chunk {index}, {length} bytes)")
                data = bytearray(length)
                recv_into_all(sock, data)
                if not self._good(index, data):
                    raise _Lost(f"chunk {index} failed its sha256 check (corrupt, or of another image)")
                self.stats["upstream_chunks"] += 1
                self._forward((index, data))
                yield index, data
        except (OSError, ConnectionError, struct.error) as err:
            raise _Lost(str(err) or type(err).__name__) from None
        finally:
            sock.close()

    def _greet_upstream(self, sock: socket.socket) -> None:
        sock.sendall(hello_bytes(self.image_id, self._key or bytes(32)))
        magic, version, status, length = REPLY.unpack(recv_exact(sock, REPLY.size))
        message = recv_exact(sock, length).decode("utf-8", "replace") if length else ""
        if magic != MAGIC or version != VERSION:
            raise _Lost("not a chain node (bad reply magic)")
        if status != ST_OK:
            raise _Lost(f"refused our hello: {message}")

    def _ask(self, lost: str | None) -> dict:
        """The server's answer: where to get the image from now."""
        answer = self.join({"image": self.image_id, "listen": self.listen, "lost": lost})
        self._joined = True
        try:
            upstream, key = answer["upstream"], answer["key"]
            if upstream is not None:
                parse_address(upstream)
            self._key = bytes.fromhex(key) if key is not None else None
            if self._key is not None and len(self._key) != 32:
                raise ValueError("the key is not 32 bytes")
            downstream = bool(answer.get("downstream", False))
        except (KeyError, TypeError, ValueError, StreamError) as err:
            raise StreamError(f"the server's chain answer is malformed ({err}): {str(answer)[:200]}") from err
        self._key_known.set()
        log.info("chain: position %s, upstream %s", answer.get("position"), upstream or "the server")
        return {"upstream": upstream, "downstream": downstream}

    def _leave(self) -> None:
        if self._joined and not self._left:
            self._left = True
            self.join({"image": self.image_id, "listen": self.listen, "lost": None, "leave": True})

    # ------------------------------------------------------------ downstream

    def _forward(self, item) -> None:
        """Queue a chunk (or the end marker) for the downstream; waits while the queue is full."""
        if item is _END:
            self._live_over = True
        if self._down is not None or self._pending is not None:
            self._queue.put(item)

    def _forward_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                item = None
            self._switch_downstream()
            if item is _STOP:
                return
            sock = self._down
            if item is None or sock is None:
                continue
            try:
                if item is _END:
                    sock.sendall(FRAME.pack(END_INDEX, 0))
                else:
                    self._send_chunk(sock, *item)
                    self.stats["forwarded_chunks"] += 1
                    self.stats["forwarded_bytes"] += FRAME.size + len(item[1])
            except OSError as err:
                log.warning("chain: dropping downstream %s: %s", _peer(sock), err)
                self._drop_downstream(sock)

    def _switch_downstream(self) -> None:
        """Take the newly greeted downstream; tell the one it replaces (it was reported lost)."""
        with self._down_lock:
            new, self._pending = self._pending, None
            if new is None:
                return
            old, self._down = self._down, new
        if old is not None:
            try:
                old.settimeout(1.0)
                old.sendall(FRAME.pack(REPLACED_INDEX, 0))
            except OSError:
                pass
            _close(old)
        if self._live_over:
            try:
                new.sendall(FRAME.pack(END_INDEX, 0))
            except OSError as err:
                log.warning("chain: dropping downstream %s: %s", _peer(new), err)
                self._drop_downstream(new)

    def _send_chunk(self, sock: socket.socket, index: int, data) -> None:
        sock.sendall(FRAME.pack(index, len(data)))
        sock.sendall(data)

    def _drop_downstream(self, sock: socket.socket) -> None:
        with self._down_lock:
            if self._down is sock:
                self._down = None
        _close(sock)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if not self._greeting.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._greet_downstream, args=(conn,), daemon=True, name="ais-chain-greet").start()

    def _greet_downstream(self, conn: socket.socket) -> None:
        peer = _peer(conn)
        try:
            conn.settimeout(HELLO_TIMEOUT)
            magic, version, kind, key, id_len = HELLO.unpack(recv_exact(conn, HELLO.size))
            if magic != MAGIC or version != VERSION or kind != KIND_HELLO or id_len > MAX_ID:
                return self._refuse(conn, peer, "not a chain hello")
            image = recv_exact(conn, id_len).decode("utf-8", "replace")
            self._key_known.wait(self.stall_timeout)  # the downstream may have heard from the server first
            if image != self.image_id:
                return self._refuse(conn, peer, f"this node sends image {self.image_id[:12]}, not {image[:12]}")
            if self._key is None or not hmac.compare_digest(key, self._key):
                return self._refuse(conn, peer, "wrong chain key")
            conn.settimeout(self.stall_timeout)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            conn.sendall(reply_bytes(ST_OK))
            with self._down_lock:
                unused, self._pending = self._pending, conn
            if unused is not None:
                _close(unused)
            self.stats["downstreams"] += 1
            self._got_downstream.set()
            log.info("chain: downstream %s connected", peer)
            conn = None
        except (OSError, ConnectionError, struct.error) as err:
            log.info("chain: connection from %s dropped before its hello: %s", peer, err)
        finally:
            if conn is not None:
                _close(conn)
            self._greeting.release()

    def _refuse(self, conn: socket.socket, peer: str, why: str) -> None:
        self.stats["refused_hellos"] += 1
        log.warning("chain: refused %s: %s", peer, why)
        try:
            conn.sendall(reply_bytes(ST_REFUSED, why))
        except OSError:
            pass

    # ------------------------------------------------------------ end

    def close(self) -> None:
        """Stop forwarding and listening; tell the server this node is done (if it has not yet)."""
        if self._stop.is_set():
            return
        self._stop.set()
        deadline = time.monotonic() + self.stall_timeout
        while True:  # the forwarder sends what is queued (the end marker) unless the downstream is stuck
            try:
                self._queue.put(_STOP, timeout=0.5)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    with self._down_lock:
                        sock = self._down
                    if sock is not None:
                        self._drop_downstream(sock)
        for t in self._threads:
            t.join(timeout=self.stall_timeout)
        self._listener.close()
        with self._down_lock:
            socks, self._down, self._pending = (self._down, self._pending), None, None
        for sock in socks:
            if sock is not None:
                _close(sock)
        try:
            self._leave()
        except Exception as err:  # noqa: BLE001 - closing: the server forgets us by lease anyway
            log.warning("chain: could not tell the server this node is done: %s", err)


def _peer(sock: socket.socket | None) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError):
        return "?"


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
