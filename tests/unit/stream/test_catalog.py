"""The image catalog: removed images stay readable by whoever holds them; replaced ones are re-read."""

from __future__ import annotations

import os
import shutil

from ais.stream.format import read_header
from ais.stream.catalog import ImageCatalog


def test_removed_image_still_readable_by_holder_and_gone_for_new_lookups(small_image, tmp_path):
    header = read_header(small_image)
    shutil.copy(small_image, tmp_path / f"{header.image_id}.aisimg")
    catalog = ImageCatalog(tmp_path)
    held = catalog.lookup(header.image_id)
    chunk = held.header.chunks[0]
    before = os.pread(held.file.fileno(), chunk.stored_length, held.data_offset + chunk.offset)
    os.unlink(tmp_path / f"{header.image_id}.aisimg")  # a rebuild's gc
    assert catalog.lookup(header.image_id) is None
    after = os.pread(held.file.fileno(), chunk.stored_length, held.data_offset + chunk.offset)
    assert after == before and len(after) == chunk.stored_length


def test_replaced_image_is_opened_again(small_image, tmp_path):
    header = read_header(small_image)
    path = tmp_path / f"{header.image_id}.aisimg"
    shutil.copy(small_image, path)
    catalog = ImageCatalog(tmp_path)
    first = catalog.lookup(header.image_id)
    shutil.copy(small_image, tmp_path / "new.tmp")
    os.rename(tmp_path / "new.tmp", path)  # rebuilt after corruption: a new inode
    second = catalog.lookup(header.image_id)
    assert second is not first and second.is_current() and not first.is_current()


def test_unknown_and_malformed_ids(small_image, tmp_path):
    catalog = ImageCatalog(tmp_path)
    assert catalog.lookup("0" * 64) is None
    assert catalog.lookup("../etc/passwd") is None


def test_ids_skip_an_image_removed_during_the_scan(small_image, tmp_path, monkeypatch):
    import ais.stream.catalog as catalog_module

    header = read_header(small_image)
    shutil.copy(small_image, tmp_path / f"{header.image_id}.aisimg")
    shutil.copy(small_image, tmp_path / "gone.aisimg")
    real = catalog_module.read_header_and_data_offset

    def racing(path):  # the gc unlinks gone.aisimg between the glob and the read
        if path.name == "gone.aisimg":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(catalog_module, "read_header_and_data_offset", racing)
    assert ImageCatalog(tmp_path).ids() == [header.image_id]
