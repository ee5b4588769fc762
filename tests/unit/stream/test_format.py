"""format.py and pack.py: round trip on a real ext4 image, and hostile headers refused."""

import hashlib
import json
import os
import re
import struct

import msgspec
import pytest
import zstandard

from ais import contracts as C
from ais.run import run
from ais.stream import format as F
from ais.stream import pack as P
from aislab.net import ais_command


def test_round_trip_places_every_used_block(small_fs, small_image):
    _, fs_img = small_fs
    header = F.read_header(small_image)
    info = P.read_fs_info(fs_img)
    assert header.image_id == "small-1"
    assert header.packages == ("a-1-1.noarch", "b-2-1.noarch")
    assert header.fs_label == "aistest" and header.fs_uuid == info.uuid
    assert len(header.chunks) > 3
    source = fs_img.read_bytes()
    covered = set()
    for index, stored in F.iter_chunks(small_image, header):
        assert stored == F.read_chunk(small_image, header, index)
        for offset, data in F.decode_chunk(header, index, stored):
            assert bytes(data) == source[offset : offset + len(data)]
            covered.update(range(offset // 4096, (offset + len(data)) // 4096))
    zeros = {b for first, n in header.zero_ranges for b in range(first, first + n)}
    for b in zeros:
        assert source[b * 4096 : (b + 1) * 4096] == bytes(4096)
    used = {b for first, n in info.used for b in range(first, first + n)}
    assert covered | zeros == used and not covered & zeros
    assert header.totals["chunks"] == len(header.chunks)


def test_header_json_round_trip_is_stable(small_image):
    header = F.read_header(small_image)
    again = F.ImageHeader.from_json(header.to_json())
    assert again == header and again.to_json() == header.to_json()


def test_chunks_hold_about_one_mib(small_image):
    header = F.read_header(small_image)
    assert all(c.raw_length <= P.CHUNK_RAW_TARGET for c in header.chunks)
    assert all(c.raw_length == P.CHUNK_RAW_TARGET for c in header.chunks[:-1])


def test_complement_of_free_ranges():
    assert P.complement([(2, 4), (8, 9)], 12) == ((0, 2), (5, 3), (10, 2))
    assert P.complement([(0, 10)], 12) == ((11, 1),)
    assert P.complement([], 3) == ((0, 3),)


def _obj(small_image):
    return json.loads(F.read_header(small_image).to_json())


def _set(path, value):
    def edit(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


HOSTILE = [
    ("unknown version", _set(["version"], 99), r"Invalid enum value 99 - at `\$\.version`"),
    ("range beyond fs", lambda o: o["zero_ranges"].append([o["fs_blocks"] - 1, 5]), "beyond the filesystem"),
    ("overlap chunk/zero", lambda o: o["zero_ranges"].append(o["chunks"][0]["ranges"][0]), "overlaps"),
    ("overlap chunk/chunk", lambda o: o["chunks"][1].__setitem__("ranges", o["chunks"][0]["ranges"]), "overlaps"),
    ("raw length over limit", _set(["chunks", 0, "raw_length"], C.MAX_CHUNK_RAW + 4096), "raw_length"),
    ("raw length vs ranges", _set(["chunks", 0, "raw_length"], 4096), "does not match its ranges"),
    ("absurd stored length", _set(["chunks", 0, "stored_length"], 1 << 40), "stored_length"),
    ("absurd fs size", _set(["fs_blocks"], 1 << 50), "fs_blocks"),
    ("odd block size", _set(["block_size"], 3000), "power of two"),
    ("negative range", _set(["zero_ranges"], [[-1, 2]]), r">= 0 - at `\$\.zero_ranges\[0\]\[0\]`"),
    ("string count", _set(["zero_ranges"], [[1, "2"]]), r"got `str` - at `\$\.zero_ranges\[0\]\[1\]`"),
    ("extra field", _set(["colour"], "red"), "unknown field `colour`"),
    ("huge integer", _set(["fs_blocks"], 2**70), r"\$\.fs_blocks"),
    ("bad sha", _set(["chunks", 0, "sha256"], "zz"), "sha256"),
    ("offsets overlap", _set(["chunks", 1, "offset"], 0), "offset"),
    ("empty object", lambda o: o.clear(), "missing required field"),
]


@pytest.mark.parametrize("name,edit,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_header_is_refused(small_image, name, edit, message):
    obj = _obj(small_image)
    edit(obj)
    with pytest.raises(F.ImageFormatError, match=message):
        F.header_from_obj(obj)


def _write_with_header(tmp_path, small_image, text: bytes, magic=F.MAGIC, length=None):
    path = tmp_path / f"hostile{len(list(tmp_path.iterdir()))}.aisimg"
    data_start = F.data_offset_of(small_image)
    with open(small_image, "rb") as f:
        f.seek(data_start)
        data = f.read()
    path.write_bytes(struct.pack("<8sQ", magic, len(text) if length is None else length) + text + data)
    return path


def _hostile_field(small_image):
    obj = _obj(small_image)
    obj["version"] = 99
    return json.dumps(obj).encode()


DEEP = 100_000  # far past the JSON parser's recursion limit


def _deep_totals(small_image):
    text = F.read_header(small_image).to_json()
    return text.replace('"totals":{', '"totals":{"x":' + "[" * DEEP + "]" * DEEP + ",", 1).encode()
# (name, function of (tmp_path, small_image) -> a hostile .aisimg, message): the admin names the file.
HOSTILE_FILES = [
    ("bad magic", lambda t, i: _write_with_header(t, i, F.read_header(i).to_json().encode(), magic=b"NOTMAGIC"),
     "bad magic"),
    ("header length over the limit", lambda t, i: _write_with_header(t, i, b"{}", length=1 << 40), "exceeds"),
    ("header not JSON", lambda t, i: _write_with_header(t, i, b"{not json"), "not valid JSON"),
    ("header nested deeply", lambda t, i: _write_with_header(t, i, b"[" * DEEP + b"]" * DEEP), "Expected `object`"),
    ("deep inside an object", lambda t, i: _write_with_header(t, i, b'{"format": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
     r"at `\$\.format`"),
    ("deep in a free-form field", lambda t, i: _write_with_header(t, i, _deep_totals(i)), "not a valid document"),
    ("hostile field", lambda t, i: _write_with_header(t, i, _hostile_field(i)), r"\$\.version"),
    ("chunk data cut short", lambda t, i: _truncated(t, i), "truncated"),
    ("too short to hold a preamble", lambda t, i: _tiny(t), "too short"),
]


def _truncated(tmp_path, small_image):
    path = tmp_path / "short.aisimg"
    path.write_bytes(small_image.read_bytes()[:-10])
    return path


def _tiny(tmp_path):
    path = tmp_path / "tiny.aisimg"
    path.write_bytes(b"AIS")
    return path


@pytest.mark.parametrize("name,make,message", HOSTILE_FILES, ids=[h[0] for h in HOSTILE_FILES])
def test_hostile_image_file_is_bad_input(tmp_path, small_image, name, make, message):
    """`ais image verify` and `ais image write` of a file whose header is not sound: a clear message,
    exit 2, no traceback, no target created."""
    path = make(tmp_path, small_image)
    with pytest.raises(F.ImageFileError, match=message):
        F.read_header(path)
    target = tmp_path / "target.img"
    for argv in (("image", "verify", str(path)), ("image", "write", str(path), str(target))):
        proc = run(ais_command(*argv), check=False)
        assert proc.returncode == 2, proc.stderr
        assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not target.exists() and not (tmp_path / "target.img.ais-progress").exists()


def test_corrupt_chunk_fails_hash_before_decompressing(small_image):
    header = F.read_header(small_image)
    stored = bytearray(F.read_chunk(small_image, header, 0))
    stored[100] ^= 0xFF
    with pytest.raises(F.ImageFormatError, match="sha256 mismatch"):
        F.decode_chunk(header, 0, bytes(stored))


def test_decompression_bomb_is_refused(small_image):
    """A frame that hashes right (hostile header) but expands past raw_length."""
    header = F.read_header(small_image)
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    chunk = header.chunks[0]
    forged = C.Chunk(chunk.offset, len(bomb), chunk.raw_length, hashlib.sha256(bomb).hexdigest(), chunk.ranges)
    hostile = msgspec.structs.replace(header, chunks=(forged,))
    with pytest.raises(F.ImageFormatError, match="frame declares"):
        F.decode_chunk(hostile, 0, bomb)
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 << 20))
    forged = C.Chunk(chunk.offset, len(no_size), chunk.raw_length, hashlib.sha256(no_size).hexdigest(), chunk.ranges)
    hostile = msgspec.structs.replace(header, chunks=(forged,))
    with pytest.raises(F.ImageFormatError):
        F.decode_chunk(hostile, 0, no_size)


def test_pack_refuses_a_file_smaller_than_its_filesystem(tmp_path, small_fs):
    cut = tmp_path / "cut.img"
    cut.write_bytes(small_fs[1].read_bytes()[: 1 << 20])
    with pytest.raises(Exception, match="smaller|dumpe2fs|Bad magic|short"):
        P.pack(cut, tmp_path / "x.aisimg", image_id="x", packages=[])
    assert not (tmp_path / "x.aisimg").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
