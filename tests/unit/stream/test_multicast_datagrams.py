"""The multicast receiver against hostile datagrams: wrong sizes refused, forged bytes overwritten or
caught by the hash, reassembly memory bounded; and the per-request budget on both sides."""

import pytest

from ais.stream import multicast as M
from ais.stream.format import read_chunk, read_header
from ais.stream.catalog import image_tag

GROUP, PORT = "239.255.43.7", 7600


@pytest.fixture
def source(small_image):
    header = read_header(small_image)
    with M.MulticastSource(GROUP, PORT, header.image_id, header) as src:
        src._want = set(range(len(header.chunks)))
        yield src


def datagram(tag, index, length, offset, payload, plen=None, magic=M.MAGIC):
    return memoryview(M.COMMON.pack(magic, M.VERSION, M.T_DATA, 0, tag)
                      + M.DATA.pack(index, length, offset, len(payload) if plen is None else plen, 0) + payload)


def real_slots(small_image, source, index):
    stored = read_chunk(small_image, source.header, index)
    return stored, [(o, stored[o: o + M.PAYLOAD_MAX]) for o in range(0, len(stored), M.PAYLOAD_MAX)]


SLOT = M.PAYLOAD_MAX
# (name, function of (tag, chunk 0's length, chunks) -> datagram, counted as refused?)
BAD = [
    ("too short", lambda t, n, c: memoryview(b"AISM\x01\x01"), False),
    ("wrong magic", lambda t, n, c: datagram(t, 0, n, 0, bytes(SLOT), magic=b"XXXX"), False),
    ("another image's tag", lambda t, n, c: datagram(t ^ 1, 0, n, 0, bytes(SLOT)), False),
    ("index past the last chunk", lambda t, n, c: datagram(t, c, n, 0, bytes(SLOT)), True),
    ("chunk length lies", lambda t, n, c: datagram(t, 0, n + 1, 0, bytes(SLOT)), True),
    ("1 byte in a full slot", lambda t, n, c: datagram(t, 0, n, 0, b"\x00"), True),
    ("offset not a slot boundary", lambda t, n, c: datagram(t, 0, n, 1, bytes(SLOT)), True),
    ("offset past the chunk", lambda t, n, c: datagram(t, 0, n, n + SLOT - n % SLOT, bytes(SLOT)), True),
    ("payload length field lies", lambda t, n, c: datagram(t, 0, n, 0, bytes(16), plen=SLOT), True),
    ("last slot too long", lambda t, n, c: datagram(t, 0, n, n - n % SLOT, bytes(SLOT)), True),
]


@pytest.mark.parametrize("name,make,counted", BAD, ids=[b[0] for b in BAD])
def test_wrong_datagrams_are_refused(source, name, make, counted):
    chunk0 = source.header.chunks[0].stored_length
    assert chunk0 % SLOT  # the premise of "last slot too long"
    packet = make(source.tag, chunk0, len(source.header.chunks))
    assert source._take_datagram(packet, 0.0) is False
    assert source._parts == {} and source._last_seen == {}
    assert source.stats["refused"] == (1 if counted else 0)


def test_forged_bytes_that_came_first_are_overwritten(small_image, source):
    stored, slots = real_slots(small_image, source, 0)
    for offset, data in slots:  # a neighbour pre-seeds every slot with right-sized garbage ...
        assert not source._take_datagram(datagram(source.tag, 0, len(stored), offset, bytes(len(data))), 0.0) \
            or offset == slots[-1][0]
    assert source.stats["bad_chunks"] == 1  # ... which completed the chunk, failed its hash, was dropped
    for offset, data in slots[:-1]:
        source._take_datagram(datagram(source.tag, 0, len(stored), offset, bytes(len(data))), 0.0)
    for offset, data in slots:  # the real transmission overwrites the forged slots
        done = source._take_datagram(datagram(source.tag, 0, len(stored), offset, data), 1.0)
    assert done and source._ready.get_nowait() == (0, stored)


def test_a_chunk_failing_its_hash_is_asked_for_at_once(small_image, source):
    stored, slots = real_slots(small_image, source, 1)
    source._requested_at[1] = 0.0
    for offset, data in slots:
        source._take_datagram(datagram(source.tag, 1, len(stored), offset, b"\xff" * len(data)), 0.1)
    assert source.stats["bad_chunks"] == 1 and 1 not in source._done
    assert 1 not in source._requested_at and 1 not in source._last_seen  # not suppressed: asked next round


def test_reassembly_memory_is_bounded(small_image, source, monkeypatch):
    monkeypatch.setattr(M, "PARTS_BYTES_MAX", 2 * source.header.chunks[0].stored_length)
    for index, chunk in enumerate(source.header.chunks):  # one forged slot in every chunk
        source._take_datagram(datagram(source.tag, index, chunk.stored_length, 0, bytes(SLOT)), float(index))
    assert source._parts_bytes == sum(len(p.buf) for p in source._parts.values()) <= M.PARTS_BYTES_MAX
    assert 0 < len(source._parts) < len(source.header.chunks)
    assert list(source._parts) == list(range(len(source.header.chunks)))[-len(source._parts):]  # stalest went
    assert source.stats["dropped_parts"] == len(source.header.chunks) - len(source._parts)


def test_requests_are_split_to_fit_the_budget():
    sizes = [3 << 20, 1 << 20, 1 << 20, 5 << 20, 1]
    packets = M.encode_requests(image_tag("x"), range(5), sizes)
    decoded = [M.decode_request(p)[1] for p in packets]
    assert decoded == [[0, 1], [2], [3], [4]]  # each within 4 MiB, or one larger chunk alone
    assert all(list(M.within_budget(d, sizes)) == d for d in decoded)  # what a server would honour
    assert list(M.within_budget(range(5), sizes)) == [0, 1]
