"""A neighbour on the boot network, for the multicast tests: watches, forges, or asks.

Run as a script inside a lab namespace (`python mcast_peer.py MODE GROUP PORT TAG ...`), never
imported by the tests (they run with --import-mode=importlib). It holds no token and knows only
what anyone on the wire knows: the group, the port and an image's id (hence its tag).

Each mode prints `{"ready": true}` once it has joined the group(s).
- `watch GROUP PORT TAG`: join the data and request groups; print one JSON line per event:
  `{"request_from": ADDRESS}` the first time a host asks for chunks of TAG, and
  `{"chunk_sent": INDEX, "sent": N}` whenever the last datagram of a chunk transmission goes by
  (N = transmissions completed so far). Runs until killed.
- `forge GROUP PORT TAG LENGTHS_JSON`: wait for the first data datagram of TAG (the session is
  under way), then send forged datagrams for every chunk: 1-byte payloads at every slot, payloads
  at offsets that are not slot boundaries, an oversized length field, and right-sized garbage
  that completes the last chunk outright; print `{"forged": N, "bytes": B}` and exit.
- `ask GROUP PORT TAG CHUNKS MARKER`: send ONE request datagram for chunks 0..CHUNKS-1 (what an
  unauthenticated neighbour can send), then one for chunk MARKER; exit after the last datagram of
  MARKER has gone by, printing `{"request_bytes": n}`. The server's queue is first-in first-out,
  so by then everything the first request made it send has been sent.
"""

import json
import os
import select
import socket
import struct
import sys

COMMON = struct.Struct("<4sBBHQ")
DATA = struct.Struct("<IIIHH")
REQ = struct.Struct("<II")
SLOT = 8192 - COMMON.size - DATA.size


def joined(group: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((group, port))
    address = os.environ["PEER_ADDRESS"]
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(address)))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    return sock


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def data_of(packet: bytes, tag: int):
    """(index, length, offset, payload length) of a data datagram of tag, else None."""
    if len(packet) < COMMON.size + DATA.size:
        return None
    magic, _, kind, _, got = COMMON.unpack_from(packet)
    if magic != b"AISM" or kind != 1 or got != tag:
        return None
    index, length, offset, plen, _ = DATA.unpack_from(packet, COMMON.size)
    return index, length, offset, plen


def watch(group: str, port: int, tag: int) -> None:
    data, req = joined(group, port), joined(group, port + 1)
    askers, sent = set(), 0
    say({"ready": True})
    while True:
        ready, _, _ = select.select([data, req], [], [])
        if req in ready:
            packet, (source, _) = req.recvfrom(65536)
            if packet[:4] == b"AISM" and COMMON.unpack_from(packet)[4] == tag and source not in askers:
                askers.add(source)
                say({"request_from": source})
        if data in ready:
            fields = data_of(data.recv(65536), tag)
            if fields and fields[2] + fields[3] == fields[1]:
                sent += 1
                say({"chunk_sent": fields[0], "sent": sent})


def datagram(tag: int, index: int, length: int, offset: int, payload: bytes, plen: int | None = None) -> bytes:
    return (COMMON.pack(b"AISM", 1, 1, 0, tag)
            + DATA.pack(index, length, offset, len(payload) if plen is None else plen, 0) + payload)


def forgeries(tag: int, lengths: list[int]) -> list[bytes]:
    out = []
    for index, length in enumerate(lengths):
        for offset in range(0, length, SLOT):
            out.append(datagram(tag, index, length, offset, b"\x00"))  # 1 byte in a full slot
            out.append(datagram(tag, index, length, offset + 1, b"\x01" * min(100, length - offset - 1)))
        out.append(datagram(tag, index, length, 0, b"\x02" * 16, plen=SLOT))  # length field lies
    last = len(lengths) - 1  # right-sized garbage in every slot: completes, fails its hash
    for offset in range(0, lengths[last], SLOT):
        out.append(datagram(tag, last, lengths[last], offset, b"\x03" * min(SLOT, lengths[last] - offset)))
    return out


def forge(group: str, port: int, tag: int, lengths: list[int]) -> None:
    data = joined(group, port)
    say({"ready": True})
    while data_of(data.recv(65536), tag) is None:
        pass
    packets = forgeries(tag, lengths)
    for packet in packets:
        data.sendto(packet, (group, port))
    say({"forged": len(packets), "bytes": sum(map(len, packets))})


def ask(group: str, port: int, tag: int, chunks: int, marker: int) -> None:
    data, req = joined(group, port), joined(group, port + 1)
    bits = bytearray((chunks + 7) // 8)
    for i in range(chunks):
        bits[i >> 3] |= 1 << (i & 7)
    request = COMMON.pack(b"AISM", 1, 2, 0, tag) + REQ.pack(0, chunks) + bytes(bits)
    req.sendto(request, (group, port + 1))
    req.sendto(COMMON.pack(b"AISM", 1, 2, 0, tag) + REQ.pack(marker, 1) + b"\x01", (group, port + 1))
    while True:
        fields = data_of(data.recv(65536), tag)
        if fields and fields[0] == marker and fields[2] + fields[3] == fields[1]:
            say({"request_bytes": len(request)})
            return


if __name__ == "__main__":
    mode, group, port, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "watch":
        watch(group, port, tag)
    elif mode == "forge":
        forge(group, port, tag, json.loads(sys.argv[5]))
    elif mode == "ask":
        ask(group, port, tag, int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(f"unknown mode {mode}")
