"""Shared pytest fixtures."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    """The demo RPM repository, built (incrementally) into build/repo once per session."""
    from ais.repo.build import build_repo

    out = ROOT / "build" / "repo"
    build_repo(ROOT / "packages", out, echo=lambda line: None)
    return out
