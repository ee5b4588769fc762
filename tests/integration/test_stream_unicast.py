"""Unicast streaming over real loopback sockets: corruption, drops, a dead server, 50 clients, a client
that stalls or goes away. (Shaped links between namespaces: test_shaped_links.py.)"""

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ais.errors import StreamError
from ais.run import run
from ais.stream.format import read_header
from ais.stream.pack import pack
from aislab.net import ais_command, make_fs_image, make_tree
from aislab.site import wait_for
from ais.stream.unicast import FRAME, OP_CHUNKS, UnicastServer, UnicastSource, _send_request, encode_bitmap, \
    fetch_header, recv_exact
from ais.stream.writer import write_image


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("uc")
    fs = make_fs_image(make_tree(base / "src", random_kib=3072), base / "fs.img", 24)
    images = base / "images"
    images.mkdir()
    pack(fs, images / "img-1.aisimg", image_id="img-1", packages=[])
    return images


@pytest.fixture
def server(image_dir):
    srv = UnicastServer(image_dir).start()
    yield srv
    srv.stop()


class Proxy:
    """A TCP proxy on loopback that can corrupt or cut the server's replies.

    corrupt_at: byte positions (per connection, server->client) to flip, on the
    first `faulty` connections; cut_after: close those connections after so many bytes;
    delay: seconds to sleep per 64 KiB forwarded.
    """

    def __init__(self, upstream, *, corrupt_at=(), cut_after=None, faulty=1, delay=0.0):
        self.upstream, self.corrupt_at, self.cut_after = upstream, set(corrupt_at), cut_after
        self.faulty, self.delay, self.connections = faulty, delay, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client, self.connections <= self.faulty), daemon=True).start()

    def _serve(self, client, faulty):
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True).start()
        sent = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if faulty:
                    data = bytearray(data)
                    for pos in self.corrupt_at:
                        if sent <= pos < sent + len(data):
                            data[pos - sent] ^= 0x55
                    if self.cut_after is not None and sent + len(data) > self.cut_after:
                        client.sendall(data[: self.cut_after - sent])
                        break
                client.sendall(data)
                sent += len(data)
                if self.delay:
                    time.sleep(self.delay)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):  # shutdown wakes the other pump thread; close alone would not
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _pump_up(self, client, upstream):
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass

    def close(self):
        self.stopped = True
        self.listener.close()


def _check(target: Path):
    run(["e2fsck", "-fn", str(target)])


def test_header_fetch_and_pinning(server, image_dir):
    header = fetch_header(server.address, "img-1")
    assert header == read_header(image_dir / "img-1.aisimg")
    with pytest.raises(StreamError, match="does not match the pinned"):
        fetch_header(server.address, "img-1", sha256="0" * 64)
    with pytest.raises(StreamError, match="does not have image"):
        fetch_header(server.address, "nope")


def test_corrupted_chunk_on_the_wire_is_fetched_again(server, tmp_path):
    header = fetch_header(server.address, "img-1")
    proxy = Proxy(server.address, corrupt_at=[5000, 300_000])
    try:
        result = write_image(UnicastSource(proxy.address, "img-1", header), tmp_path / "t", header=header)
    finally:
        proxy.close()
    assert result.bad_chunks >= 1 and result.rounds == 2
    _check(tmp_path / "t")


def test_dropped_connection_resumes(server, tmp_path):
    header = fetch_header(server.address, "img-1")
    proxy = Proxy(server.address, cut_after=400_000, faulty=2)
    source = UnicastSource(proxy.address, "img-1", header, backoff=0.05)
    try:
        result = write_image(source, tmp_path / "t", header=header)
    finally:
        proxy.close()
    assert source.connections == 3 and result.bad_chunks == 0
    assert source.bytes_received < 1.5 * header.stored_bytes  # only the rest was asked for
    _check(tmp_path / "t")


def test_server_killed_mid_stream_fails_clearly(image_dir, tmp_path):
    header = read_header(image_dir / "img-1.aisimg")
    proc = subprocess.Popen(
        [*ais_command("image", "serve-stream"), str(image_dir), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        port = int(line.split(",")[1].strip(" ]}\n"))
        proxy = Proxy(("127.0.0.1", port), delay=0.05, faulty=0)
        source = UnicastSource(proxy.address, "img-1", header, retries=2, backoff=0.05)
        killer = threading.Timer(0.3, proc.kill)
        killer.start()
        with pytest.raises(StreamError, match=r"gave up after 3 attempts, \d+ chunks missing"):
            write_image(source, tmp_path / "t", header=header)
        killer.join()
        proxy.close()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert (tmp_path / "t.ais-progress").exists()  # a later run resumes


def test_fifty_concurrent_clients(server, tmp_path):
    header = fetch_header(server.address, "img-1")
    errors, results = [], []

    def client(k):
        try:
            results.append(write_image(UnicastSource(server.address, "img-1", header), tmp_path / f"t{k}", header=header))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 50
    assert server.bytes_sent >= 50 * header.stored_bytes
    reference = (tmp_path / "t0").read_bytes()
    for k in (1, 25, 49):
        assert (tmp_path / f"t{k}").read_bytes() == reference
    _check(tmp_path / "t0")


@pytest.fixture(scope="module")
def big_image_dir(tmp_path_factory):
    """An image larger than the server's largest send buffer (4 MiB) plus a tiny client window."""
    base = tmp_path_factory.mktemp("ucbig")
    fs = make_fs_image(make_tree(base / "src", random_kib=12288, text_files=10), base / "fs.img", 40)
    images = base / "images"
    images.mkdir()
    pack(fs, images / "img-b.aisimg", image_id="img-b", packages=[])
    return images


def ask_for_everything(address, image_id: str, window: int) -> socket.socket:
    """A client that asks for every chunk over a socket with a fixed receive window, and reads nothing yet."""
    header = fetch_header(address, image_id)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
    sock.settimeout(30)
    sock.connect(address)
    count = len(header.chunks)
    _send_request(sock, OP_CHUNKS, image_id, count, encode_bitmap(range(count), count))
    return sock


def read_to_the_end(sock: socket.socket, *, piece: int = 1 << 30, pause: float = 0.0) -> bool:
    """Read frames until the end frame (True) or until the server closes the connection (False),
    optionally `piece` bytes at a time with a pause after each (a client whose disk is slow)."""
    try:
        while True:
            index, length = FRAME.unpack(recv_exact(sock, FRAME.size))
            if index == 0xFFFFFFFF:
                return True
            while length > 0:
                length -= len(recv_exact(sock, min(piece, length)))
                time.sleep(pause)
    except ConnectionError:
        return False


def test_a_slow_client_gets_the_whole_image(big_image_dir):
    """The client pauses 0.1 s after every 256 KiB: the server's send buffer fills again and again,
    which is back-pressure, not a client that went away (the I/O timeout, 1 s, is never reached)."""
    server = UnicastServer(big_image_dir, io_timeout=1.0).start()
    try:
        with ask_for_everything(server.address, "img-b", 64 << 10) as sock:
            assert read_to_the_end(sock, piece=256 << 10, pause=0.1) is True
        assert server.bytes_sent >= read_header(big_image_dir / "img-b.aisimg").stored_bytes
    finally:
        server.stop()


def test_a_stalled_client_is_dropped_after_the_timeout(big_image_dir):
    server = UnicastServer(big_image_dir, io_timeout=1.0).start()
    try:
        with ask_for_everything(server.address, "img-b", 4096) as stalled:
            assert wait_for(lambda: server.open_connections == 1, timeout=10)
            assert wait_for(lambda: server.open_connections == 0, timeout=20)  # took nothing for 1 s: dropped
            assert read_to_the_end(stalled) is False  # cut short, no end frame
    finally:
        server.stop()


def test_a_client_that_goes_away_is_noticed_at_once(big_image_dir):
    """Closing the connection mid-stream ends the server's side now, not after its (60 s) timeout."""
    server = UnicastServer(big_image_dir, io_timeout=60.0).start()
    try:
        sock = ask_for_everything(server.address, "img-b", 4096)
        recv_exact(sock, FRAME.size)
        assert server.open_connections == 1
        sock.close()
        assert wait_for(lambda: server.open_connections == 0, timeout=10)
        assert len(fetch_header(server.address, "img-b").chunks) > 4  # and it goes on serving
    finally:
        server.stop()
