"""The torrent of an image: piece i is chunk i, the hashes are libtorrent's own, the name is salted."""

import hashlib

import libtorrent as lt
import pytest

from ais.errors import ImageFormatError
from ais.stream.format import iter_chunks, read_header
from ais.stream.torrent import chunk_file, file_entries, make_torrent, piece_size_for, torrent_info


@pytest.fixture(scope="module")
def made(small_image):
    header = read_header(small_image)
    return header, make_torrent(small_image)


def test_piece_i_is_chunk_i_with_pad_files_between(made):
    header, data = made
    info = torrent_info(data, header)
    files = info.layout()
    piece = info.piece_length()
    assert piece == piece_size_for(header) and piece & (piece - 1) == 0 and piece >= 16384
    assert piece >= max(c.stored_length for c in header.chunks) > piece // 2
    assert info.num_pieces() == len(header.chunks) > 1 and info.priv()
    real = [i for i in range(files.num_files()) if not files.file_flags(i) & lt.file_storage.flag_pad_file]
    pads = [i for i in range(files.num_files()) if files.file_flags(i) & lt.file_storage.flag_pad_file]
    for index, f in enumerate(real):
        chunk = header.chunks[index]
        assert files.file_path(f).endswith("/" + chunk_file(index))
        assert (files.file_offset(f), files.file_size(f)) == (index * piece, chunk.stored_length)
        # the pad file after it fills the rest of its piece: nothing else shares piece i
        pad = f + 1
        assert pad in pads and files.file_size(pad) == piece - chunk.stored_length
    assert info.total_size() == piece * len(header.chunks)
    assert not {b"announce", b"announce-list", b"url-list", b"httpseeds", b"nodes"} & set(lt.bdecode(data))


def test_piece_hashes_are_what_libtorrent_computes_from_the_chunk_files(made, small_image, tmp_path):
    header, data = made
    info = torrent_info(data, header)
    for index, stored in iter_chunks(small_image, header):
        path = tmp_path / info.name() / chunk_file(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(stored)
        padded = stored + bytes(info.piece_length() - len(stored))
        assert info.hash_for_piece(index) == hashlib.sha1(padded).digest()
    maker = lt.create_torrent(file_entries(header, info.name()), info.piece_length(),
                              lt.create_torrent.v1_only | lt.create_torrent.canonical_files)
    lt.set_piece_hashes(maker, str(tmp_path))
    theirs = lt.torrent_info(lt.bencode(maker.generate()))
    assert [theirs.hash_for_piece(i) for i in range(theirs.num_pieces())] == \
        [info.hash_for_piece(i) for i in range(info.num_pieces())]


def test_the_salt_makes_each_torrent_and_info_hash_unguessable(made, small_image):
    header, data = made
    again = make_torrent(small_image)
    first, second = torrent_info(data, header), torrent_info(again, header)
    assert first.info_hash() != second.info_hash() and first.name() != second.name()
    salt = first.name().rsplit("-", 1)[1]
    assert len(salt) == 32 and first.name() == f"ais-{header.image_id[:12]}-{salt}"
    # what someone knowing only public facts can make: the same layout without the salt
    assert torrent_info(make_torrent(small_image, salt=""), header).info_hash() != first.info_hash()
    # the salt is the only secret part: with it, anyone makes the same info dictionary
    assert torrent_info(make_torrent(small_image, salt=salt), header).info_hash() == first.info_hash()



def _not_private(data: bytes) -> bytes:
    decoded = lt.bdecode(data)
    del decoded[b"info"][b"private"]
    return lt.bencode(decoded)


def _one_piece_less(data: bytes) -> bytes:
    decoded = lt.bdecode(data)
    decoded[b"info"][b"pieces"] = decoded[b"info"][b"pieces"][:-20]
    decoded[b"info"][b"files"] = decoded[b"info"][b"files"][:-2]
    return lt.bencode(decoded)


def _chunk_size_changed(data: bytes) -> bytes:
    decoded = lt.bdecode(data)
    decoded[b"info"][b"files"][0][b"length"] -= 1
    decoded[b"info"][b"files"][1][b"length"] += 1
    return lt.bencode(decoded)


BAD_TORRENTS = [
    ("not bencoded", lambda data: b"garbage", "not a valid .torrent"),
    ("not private", _not_private, "not private"),
    ("a piece short", _one_piece_less, "pieces for"),
    ("a chunk's length moved", _chunk_size_changed, "is not chunk 0"),
]


@pytest.mark.parametrize("case, spoil, words", BAD_TORRENTS, ids=[c[0] for c in BAD_TORRENTS])
def test_a_torrent_that_does_not_match_the_header_is_refused(made, case, spoil, words):
    header, data = made
    with pytest.raises(ImageFormatError, match=words):
        torrent_info(spoil(data), header)
