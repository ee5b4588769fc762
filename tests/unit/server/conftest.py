"""Fixtures: a small real site (mail, db) and a real cache serving both from the base image."""

from pathlib import Path

import pytest

from ais.descriptors import load_site
from aislab.site import publish_base_cache, subset_descriptors

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def small_site_dir(tmp_path_factory) -> Path:
    return subset_descriptors(ROOT / "descriptors", tmp_path_factory.mktemp("desc"), ["mail", "db"],
                              ["mail01", "db01"])


@pytest.fixture(scope="session")
def base_cache(small_site_dir, repo_dir, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    publish_base_cache(small_site_dir, repo_dir, cache)
    return cache


@pytest.fixture(scope="session")
def small_site(small_site_dir, repo_dir):
    return load_site(small_site_dir, repo_dir)
