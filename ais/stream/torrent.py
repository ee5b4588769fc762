"""A BitTorrent metainfo (.torrent) per image whose pieces are its chunks, and reading one back.

What it does: `make_torrent(aisimg_path)` describes an .aisimg's stored chunks as a private,
v1-only, multi-file torrent: one file per chunk, `<name>/<index:06d>`, sized to the chunk's
stored (compressed) length, and libtorrent's canonical pad files after each, so chunk i is
exactly the start of piece i and piece i holds nothing else (the piece size is the smallest
power of two, at least 16 KiB, that holds the largest chunk). Each piece's SHA-1 is computed
here from the chunk bytes plus the zeros of its padding, reading the .aisimg once; no chunk
file is written. The torrent's name is `ais-<id[:12]>-<salt>` with a random 128-bit salt made
per torrent, so its info-hash cannot be computed from public facts (the image id, the header):
only those who are handed the .torrent (token holders, `GET /v1/images/<id>/torrent`) learn it.
The torrent has no tracker, no web seed and no DHT nodes: `ais serve` names both per session.

`torrent_info(data)` parses .torrent bytes and checks they line up with a trusted header
(`check_layout`): piece i == chunk i, each file's size == the chunk's stored length.

`make_file_torrent(path)` describes one whole file (a remainder RPM, ais.server.rpmtorrents): a
private single-file torrent named as the file, its salt in the info dictionary (`ais-salt`);
`file_torrent_info(data, name, size)` parses one and checks it is that one private file.

What it reads: an .aisimg file (header and every chunk, sequentially). What it fails on:
`ImageFormatError` for an image without chunks (nothing to share) or a torrent whose layout
does not match the header (a wrong or forged .torrent: it would make libtorrent fetch
something else). Returns the bencoded .torrent bytes, or a libtorrent `torrent_info`.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import libtorrent as lt

from ais.errors import ImageFormatError
from ais.stream.format import ImageHeader, iter_chunks, read_header

MIN_PIECE = 16 << 10  # libtorrent's smallest piece size (one block)
CREATOR = "ais"


def piece_size_for(header: ImageHeader) -> int:
    """The smallest power of two, at least MIN_PIECE, that holds the largest stored chunk."""
    largest = max(c.stored_length for c in header.chunks)
    size = MIN_PIECE
    while size < largest:
        size <<= 1
    return size


def chunk_file(index: int) -> str:
    """The name of chunk index's file inside the torrent's directory."""
    return f"{index:06d}"


def torrent_name(header: ImageHeader, salt: str) -> str:
    return f"ais-{header.image_id[:12]}-{salt}"


def file_entries(header: ImageHeader, name: str) -> list:
    """One torrent file per chunk, in chunk order (which is also their names' sorted order)."""
    return [lt.create_file_entry(f"{name}/{chunk_file(i)}", c.stored_length) for i, c in enumerate(header.chunks)]


def make_torrent(aisimg_path: Path, *, salt: str | None = None) -> bytes:
    """The .torrent of an image (see the module docstring); salt defaults to 32 random hex digits
    (the lab passes one to show what a guess without it looks like)."""
    path = Path(aisimg_path)
    header = read_header(path)
    if not header.chunks:
        raise ImageFormatError(f"{path}: the image has no chunks: nothing to share by BitTorrent")
    piece = piece_size_for(header)
    name = torrent_name(header, secrets.token_hex(16) if salt is None else salt)
    maker = lt.create_torrent(file_entries(header, name), piece, lt.create_torrent.v1_only | lt.create_torrent.canonical_files)
    if maker.num_pieces() != len(header.chunks):
        raise ImageFormatError(f"{path}: {maker.num_pieces()} pieces for {len(header.chunks)} chunks (layout bug)")
    for index, stored in iter_chunks(path, header):
        pad = maker.piece_size(index) - len(stored)
        if pad < 0:
            raise ImageFormatError(f"{path}: chunk {index} does not fit its piece (layout bug)")
        digest = hashlib.sha1(stored)
        digest.update(bytes(pad))
        maker.set_hash(index, digest.digest())
    maker.set_priv(True)
    maker.set_creator(CREATOR)
    return lt.bencode(maker.generate())


def torrent_info(data: bytes, header: ImageHeader) -> lt.torrent_info:
    """Parse .torrent bytes and check that they describe header's chunks (`check_layout`)."""
    try:
        info = lt.torrent_info(lt.bdecode(data))
    except (RuntimeError, TypeError, ValueError) as err:
        raise ImageFormatError(f"the torrent of image {header.image_id[:12]} is not a valid .torrent: {err}") from err
    check_layout(info, header)
    return info


def check_layout(info: lt.torrent_info, header: ImageHeader) -> None:
    """Piece i must be chunk i: as many pieces as chunks, each chunk's file at its piece's start,
    sized to the chunk's stored length; the torrent must be private. ImageFormatError otherwise."""
    where = f"the torrent of image {header.image_id[:12]}"
    if not info.priv():
        raise ImageFormatError(f"{where} is not private")
    if info.num_pieces() != len(header.chunks):
        raise ImageFormatError(f"{where} has {info.num_pieces()} pieces for {len(header.chunks)} chunks")
    files = info.layout()
    real = [i for i in range(files.num_files()) if not files.file_flags(i) & lt.file_storage.flag_pad_file]
    if len(real) != len(header.chunks):
        raise ImageFormatError(f"{where} has {len(real)} files for {len(header.chunks)} chunks")
    for index, (f, chunk) in enumerate(zip(real, header.chunks)):
        if files.file_size(f) != chunk.stored_length or files.file_offset(f) != index * info.piece_length():
            raise ImageFormatError(f"{where}: file {files.file_path(f)} is not chunk {index} at the start of piece {index}")


# ------------------------------------------------------------------ a torrent per file (the remainder's RPMs)

FILE_SALT_KEY = "ais-salt"  # an extra key of the info dictionary: part of the info-hash, ignored by libtorrent
FILE_READ = 1 << 20


def make_file_torrent(path: Path, *, salt: str | None = None) -> bytes:
    """A private, v1-only, single-file torrent of the file at path, named after it (so that a client
    saves it under its own name), with libtorrent's piece size for its length. Its info dictionary
    carries a random 128-bit salt (`ais-salt`), so that the info-hash of a public file (an RPM
    anyone can download) is a secret only those handed the .torrent learn. ImageFormatError for
    an empty file (nothing to share); OSError when it cannot be read."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ImageFormatError(f"{path}: an empty file: nothing to share by BitTorrent")
    maker = lt.create_torrent([lt.create_file_entry(path.name, size)], 0, lt.create_torrent.v1_only)
    piece = maker.piece_length()
    with open(path, "rb") as f:
        for index in range(maker.num_pieces()):
            digest = hashlib.sha1()
            want = maker.piece_size(index)
            while want:
                block = f.read(min(want, FILE_READ))
                if not block:
                    raise ImageFormatError(f"{path}: shorter than {size} bytes while it was read")
                digest.update(block)
                want -= len(block)
            maker.set_hash(index, digest.digest())
    if piece * maker.num_pieces() < size:
        raise ImageFormatError(f"{path}: {maker.num_pieces()} pieces of {piece} bytes do not hold {size} bytes")
    maker.set_priv(True)
    maker.set_creator(CREATOR)
    entry = maker.generate()
    entry[b"info"][FILE_SALT_KEY.encode()] = (secrets.token_hex(16) if salt is None else salt).encode()
    return lt.bencode(entry)


def file_torrent_info(data: bytes, name: str, size: int) -> lt.torrent_info:
    """Parse .torrent bytes and check that they describe one file `name` of `size` bytes, private
    (ImageFormatError otherwise: a wrong or forged torrent would save something else, or elsewhere)."""
    where = f"the torrent of {name}"
    try:
        info = lt.torrent_info(lt.bdecode(data))
    except (RuntimeError, TypeError, ValueError) as err:
        raise ImageFormatError(f"{where} is not a valid .torrent: {err}") from err
    if not info.priv():
        raise ImageFormatError(f"{where} is not private")
    files = info.layout()
    if files.num_files() != 1 or files.file_path(0) != name or files.file_size(0) != size:
        raise ImageFormatError(f"{where} does not describe the one file {name} of {size} bytes")
    return info
