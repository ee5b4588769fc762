"""Fixtures: the demo site rebuilt for real into a cache (3 images, 11 configurations), and a history."""

from pathlib import Path

import pytest

from ais.cache.rebuild import Options, rebuild
from ais.cache.report import Reporter
from ais.descriptors import load_site
from ais.server.history import History

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def demo_cache(repo_dir, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("console-cache")
    rebuild(Options(descriptors=ROOT / "descriptors", repo=repo_dir, cache=cache), Reporter(quiet=True))
    return cache


@pytest.fixture(scope="session")
def demo_site(repo_dir):
    return load_site(ROOT / "descriptors", repo_dir)


def report(status: str, **more) -> dict:
    return {"status": status, "phases": [], "timings": {}, **more}


@pytest.fixture
def history(tmp_path) -> Path:
    """Two hosts' installs: mail01 installed and up, db01 failed with a hostile message."""
    path = tmp_path / "history.sqlite"
    db = History(path)
    db.add("mail01", report("ok", image="a" * 64, generation=1,
                            phases=[{"name": "plan", "start": 100.0, "end": 101.0},
                                    {"name": "image", "start": 101.0, "end": 110.5}]))
    db.add("mail01", report("up", phases=[{"name": "up", "start": 130.0, "end": 140.0}]))
    db.add("db01", report("failed", phase="install", message='<script>alert("x")</script> & "quoted"'))
    return path
