"""SwarmSource's pure parts: how missing chunks are named, and what it refuses before any network."""

import pytest

from ais.errors import ImageFormatError, StreamError
from ais.stream.format import read_header
from ais.stream.swarm import SwarmSource, ranges_text
from ais.stream.torrent import make_torrent


@pytest.mark.parametrize("indexes, text", [
    ([], ""), ([3], "3"), ([0, 1, 2, 5, 7, 8], "0-2, 5, 7-8"), ([9, 8, 7], "7-9"),
    (list(range(0, 40, 2)), "0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, ..."),
])
def test_missing_chunks_are_named_as_ranges(indexes, text):
    assert ranges_text(indexes) == text


def never_join(request):
    raise AssertionError("no join before fetch")


BAD = [
    ("encryption unknown", {"encryption": "strong"}, StreamError, "encryption must be one of"),
    ("torrent of another image", {"torrent": b"d4:infod4:name1:xee"}, ImageFormatError, "not a valid .torrent"),
]


@pytest.mark.parametrize("case, change, error, words", BAD, ids=[c[0] for c in BAD])
def test_bad_arguments_are_refused_before_any_session(small_image, tmp_path, case, change, error, words):
    header = read_header(small_image)
    torrent = change.pop("torrent", None) or make_torrent(small_image)
    with pytest.raises(error, match=words):
        SwarmSource(header, torrent, never_join, listen_ip="127.0.0.1", staging_dir=tmp_path, **change)
