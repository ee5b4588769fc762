"""The one entry point: every command runs through the installed `ais`, errors map in one place.

Regression: `ais image write|get|verify|serve-stream` crashed with "'Namespace'
object has no attribute 'handler'" because the image subcommands registered
`func` while ais.cli calls `handler`, and the tests reached them through a
second entry point (`python -m ais.stream.commands`) that hid it.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

from aislab.net import ais_command, make_fs_image, make_tree
from ais.stream.pack import pack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("entry")
    fs = make_fs_image(make_tree(work / "tree", random_kib=512, text_files=20), work / "fs.img", 32)
    out = work / "img.aisimg"
    pack(fs, out, image_id="img", packages=[])
    return out


def ais(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(ais_command(*args), capture_output=True, text=True, timeout=120)


def test_image_verify_runs_through_ais(image):
    proc = ais("image", "verify", str(image), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chunks"] > 0
    assert "internal error" not in proc.stderr


def test_image_write_runs_through_ais(image, tmp_path):
    target = tmp_path / "disk.img"
    proc = ais("image", "write", str(image), str(target), "--create-file", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chunks_written"] > 0


def test_every_subcommand_has_a_handler():
    """Each leaf subcommand of `ais` sets the `handler` that ais.cli calls."""
    from ais.cli import build_parser

    def leaves(parser, path=()):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            yield path, parser
        for action in subs:
            for name, child in action.choices.items():
                yield from leaves(child, (*path, name))

    missing = [" ".join(path) for path, p in leaves(build_parser()) if p.get_default("handler") is None]
    assert missing == []


def test_one_entry_point_in_the_product():
    """Only ais/cli.py runs as a program (the lab's tools live in aislab/)."""
    mains = []
    for path in sorted((ROOT / "ais").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.If) and "__main__" in ast.dump(node.test):
                mains.append(str(path.relative_to(ROOT)))
    assert mains == ["ais/cli.py"]
