"""The torrent of one file (a remainder RPM): single file under its own name, libtorrent's hashes,
private, and a salt in the info dictionary that makes the info-hash a secret."""

import hashlib

import libtorrent as lt
import pytest

from ais.errors import ImageFormatError
from ais.stream.torrent import FILE_SALT_KEY, file_torrent_info, make_file_torrent

SIZE = 100_000  # not a multiple of any piece size: the last piece is short


@pytest.fixture
def rpm(tmp_path):
    path = tmp_path / "pkg-1.0-1.x86_64.rpm"
    path.write_bytes(bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256))
    return path


def test_one_private_file_under_its_own_name_with_its_piece_hashes(rpm):
    data = make_file_torrent(rpm, salt="s" * 32)
    info = file_torrent_info(data, rpm.name, SIZE)
    assert info.priv() and info.num_files() == 1 and info.layout().file_path(0) == rpm.name
    content, piece = rpm.read_bytes(), info.piece_length()
    assert info.num_pieces() == -(-SIZE // piece) > 1
    for i in range(info.num_pieces()):
        assert bytes(info.hash_for_piece(i)) == hashlib.sha1(content[i * piece:(i + 1) * piece]).digest()
    decoded = lt.bdecode(data)
    assert decoded[b"info"][FILE_SALT_KEY.encode()] == b"s" * 32
    assert not {b"announce", b"announce-list", b"url-list", b"nodes"} & set(decoded)


def test_the_salt_alone_changes_the_info_hash(rpm):
    same = [file_torrent_info(make_file_torrent(rpm, salt="a" * 32), rpm.name, SIZE).info_hash() for _ in range(2)]
    other = file_torrent_info(make_file_torrent(rpm, salt="b" * 32), rpm.name, SIZE).info_hash()
    random = file_torrent_info(make_file_torrent(rpm), rpm.name, SIZE).info_hash()
    assert same[0] == same[1] and len({same[0], other, random}) == 3


def test_an_empty_file_has_no_torrent(tmp_path):
    empty = tmp_path / "empty.rpm"
    empty.write_bytes(b"")
    with pytest.raises(ImageFormatError, match="empty"):
        make_file_torrent(empty)


def _public(data: bytes) -> bytes:
    entry = lt.bdecode(data)
    del entry[b"info"][b"private"]
    return lt.bencode(entry)


BAD = [  # (what, how to spoil the torrent or the expectation, message)
    ("not bencoded", lambda d, n, s: (b"garbage", n, s), "not a valid .torrent"),
    ("another name", lambda d, n, s: (d, "other.rpm", s), "does not describe the one file"),
    ("another size", lambda d, n, s: (d, n, s + 1), "does not describe the one file"),
    ("not private", lambda d, n, s: (_public(d), n, s), "not private"),
]


@pytest.mark.parametrize("what,spoil,message", BAD, ids=[b[0] for b in BAD])
def test_a_torrent_that_is_not_the_plans_file_is_refused(rpm, what, spoil, message):
    data, name, size = spoil(make_file_torrent(rpm), rpm.name, SIZE)
    with pytest.raises(ImageFormatError, match=message):
        file_torrent_info(data, name, size)
