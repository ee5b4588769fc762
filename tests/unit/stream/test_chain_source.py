"""ChainSource's protocol on loopback sockets, against scripted peers and a scripted server board:
an upstream that misbehaves (a table: refuses, sends a chunk that fails its hash, a chunk of another
image, a malformed frame, dies mid-chunk) is dropped and reported, and the image is still written
exactly; a node refuses hellos without the chain's key or for another image (a table) and forwards
only to the downstream that has it. The multi-host runs are tests/integration/test_stream_chain.py."""

import filecmp
import hashlib
import socket
import struct
import threading

import pytest

from ais.stream.chain import END_INDEX, HELLO, REPLY, ChainSource, hello_bytes, reply_bytes
from ais.stream.format import read_header, read_chunk
from ais.stream.unicast import FRAME, UnicastServer, recv_exact
from ais.stream.writer import write_image

KEY = bytes(range(32))


@pytest.fixture
def server(small_image):
    srv = UnicastServer(small_image.parent).start()
    yield srv
    srv.stop()


@pytest.fixture
def reference(small_image, tmp_path):
    path = tmp_path / "reference.img"
    write_image(small_image, path)
    return path


class Board:
    """A scripted server: the answers in order (the last one repeats); records the requests."""

    def __init__(self, *upstreams, downstream=False):
        self.upstreams, self.downstream = list(upstreams), downstream
        self.requests: list[dict] = []
        self.asked = threading.Event()

    def __call__(self, request: dict) -> dict:
        self.requests.append(request)
        self.asked.set()
        if request.get("leave"):
            return {"upstream": None, "key": KEY.hex(), "position": 0, "downstream": False}
        upstream = self.upstreams.pop(0) if len(self.upstreams) > 1 else self.upstreams[0]
        return {"upstream": upstream, "key": KEY.hex(), "position": 1, "downstream": self.downstream}


class FakeUpstream:
    """One connection's worth of a peer: takes the hello, then does what `behave` says."""

    def __init__(self, behave):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.hello = None
        threading.Thread(target=self._serve, args=(behave,), daemon=True).start()

    def _serve(self, behave):
        conn, _ = self.listener.accept()
        with conn:
            self.hello = HELLO.unpack(recv_exact(conn, HELLO.size))
            recv_exact(conn, self.hello[4])
            try:
                behave(conn)
            except ConnectionError:  # the node dropped this bad upstream while it was still sending
                pass
        self.listener.close()


def frame(index: int, data: bytes) -> bytes:
    return FRAME.pack(index, len(data)) + data


def misbehaviours(path, header):
    chunk0, chunk1 = read_chunk(path, header, 0), read_chunk(path, header, 1)
    flipped = bytearray(chunk0)
    flipped[10] ^= 1
    foreign = (chunk1 * 2)[: len(chunk0)]  # right length, another image's (another place's) bytes
    return [
        ("refuses", lambda c: c.sendall(reply_bytes(1, "no"))),
        ("bad reply magic", lambda c: c.sendall(b"HTTP/1.1 400 \r\n")),
        ("flipped byte", lambda c: c.sendall(reply_bytes(0) + frame(0, bytes(flipped)))),
        ("chunk of another image", lambda c: c.sendall(reply_bytes(0) + frame(0, foreign))),
        ("wrong length", lambda c: c.sendall(reply_bytes(0) + frame(0, chunk0 + b"x"))),
        ("index out of range", lambda c: c.sendall(reply_bytes(0) + FRAME.pack(len(header.chunks), 1) + b"x")),
        ("dies mid-chunk", lambda c: c.sendall(reply_bytes(0) + FRAME.pack(0, len(chunk0)) + chunk0[:100])),
    ]


CASES = ["refuses", "bad reply magic", "flipped byte", "chunk of another image", "wrong length",
         "index out of range", "dies mid-chunk"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_upstream_is_dropped_reported_and_nothing_wrong_is_written(case, small_image, server, reference,
                                                                        tmp_path):
    header = read_header(small_image)
    behave = dict(misbehaviours(small_image, header))[case]
    bad = FakeUpstream(behave)
    board = Board(bad.address, None)  # then the server's stream
    target = tmp_path / "t.img"
    with ChainSource(header, board, server.address, listen_ip="127.0.0.1", stall_timeout=10) as source:
        result = write_image(source, target, header=header, journal_path=None)
    assert filecmp.cmp(reference, target, shallow=False)
    assert result.bad_chunks == 0  # the writer never saw a bad chunk
    assert [r["lost"] for r in board.requests[:2]] == [None, bad.address]
    assert board.requests[-1].get("leave") is True
    assert source.stats["reconnects"] == 1 and source.stats["head_chunks"] == len(header.chunks)
    assert source.stats["bad_chunks"] == (1 if case in ("flipped byte", "chunk of another image") else 0)
    assert bad.hello[3] == KEY  # it was sent the chain's key


def greet(address: str, hello: bytes):
    """(status, message) a node answers to hello, and the socket (open if accepted)."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(hello)
    magic, _, status, length = REPLY.unpack(recv_exact(sock, REPLY.size))
    return status, recv_exact(sock, length).decode() if length else "", sock


BAD_HELLOS = [
    ("wrong key", lambda image: hello_bytes(image, bytes(32)), "wrong chain key"),
    ("another image", lambda image: hello_bytes("other-image", KEY), "not other-image"),
    ("bad magic", lambda image: b"XXXX" + hello_bytes(image, KEY)[4:], "not a chain hello"),
    ("id too long", lambda image: HELLO.pack(b"AISC", 1, 1, KEY, 300), "not a chain hello"),
]


def test_a_node_refuses_hellos_without_the_key_and_forwards_to_the_one_that_has_it(small_image, server,
                                                                                   reference, tmp_path):
    header = read_header(small_image)
    board = Board(None, downstream=True)  # the head, told a downstream will connect
    target, result = tmp_path / "t.img", {}
    with ChainSource(header, board, server.address, listen_ip="127.0.0.1", stall_timeout=10,
                     downstream_wait=60) as source:
        writer = threading.Thread(target=lambda: result.update(
            w=write_image(source, target, header=header, journal_path=None)))
        writer.start()
        board.asked.wait(10)
        for _, make, message in BAD_HELLOS:
            status, text, sock = greet(source.listen, make(header.image_id))
            assert (status, message in text) == (1, True), text
            assert sock.recv(1) == b""  # closed: no chunk
            sock.close()
        status, _, sock = greet(source.listen, hello_bytes(header.image_id, KEY))
        assert status == 0
        got = {}
        while True:
            index, length = FRAME.unpack(recv_exact(sock, FRAME.size))
            if index == END_INDEX:
                break
            got[index] = hashlib.sha256(recv_exact(sock, length)).hexdigest()
        sock.close()
        writer.join(60)
    assert got == {i: c.sha256 for i, c in enumerate(header.chunks)}  # every chunk, each checked
    assert filecmp.cmp(reference, target, shallow=False)
    assert source.stats["refused_hellos"] == len(BAD_HELLOS) and source.stats["downstreams"] == 1
    assert source.stats["forwarded_chunks"] == len(header.chunks)


def test_a_malformed_answer_of_the_server_is_a_stream_error(small_image, server, tmp_path):
    from ais.errors import StreamError

    header = read_header(small_image)
    with ChainSource(header, lambda r: {"upstream": "somewhere", "key": "zz"}, server.address,
                     listen_ip="127.0.0.1") as source:
        with pytest.raises(StreamError, match="chain answer is malformed"):
            write_image(source, tmp_path / "t.img", header=header, journal_path=None)


def test_struct_sizes_are_what_the_docs_say():
    assert (HELLO.size, REPLY.size, FRAME.size) == (40, 8, 8)
    assert struct.calcsize("<4sBB32sH") == 40


def test_a_chain_that_gives_nothing_stalls(small_image, server, tmp_path):
    """Two upstreams in a row accept and then send nothing: ChainStalled (the caller falls back)."""
    from ais.stream.chain import ChainStalled

    header = read_header(small_image)
    silent = [FakeUpstream(lambda c: c.recv(1 << 16) and c.recv(1)) for _ in range(2)]
    board = Board(*(s.address for s in silent))
    with ChainSource(header, board, server.address, listen_ip="127.0.0.1", stall_timeout=0.3) as source:
        with pytest.raises(ChainStalled, match="no good chunk for 0.3 s"):
            write_image(source, tmp_path / "t.img", header=header, journal_path=None)
    assert [r["lost"] for r in board.requests[:2]] == [None, silent[0].address]
