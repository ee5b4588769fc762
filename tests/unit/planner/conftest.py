"""Tiny hand-drawn planning instances shared by the planner tests."""

from __future__ import annotations

from ais.cost import CostModel
from ais.planner.problem import problem_from_sets

# Every package: 10 s by RPM, 100 installed bytes. An image costs 0.5 s plus
# nothing per byte; its stored size is exactly its installed size.
SIMPLE_COST = CostModel(
    transaction_s=0.0,
    host_files_s=0.0,
    image_fixed_s=0.5,
    stream_bytes_per_s=1e15,
    stored_factor=1.0,
    image_overhead_bytes=0,
    fresh_fs_s=0.0,
    finish_s=0.0,
    finish_per_file_s=0.0,
    finish_per_image_byte_s=0.0,
)


def simple_problem(configs: dict[str, set], budget: int, weights: dict[str, float] | None = None, **kwargs):
    packages = set().union(*configs.values()) if configs else set()
    return problem_from_sets(
        {n: frozenset(s) for n, s in configs.items()},
        weights=weights if weights is not None else {n: 1.0 for n in configs},
        rpm_seconds={p: 10.0 for p in packages},
        installed_bytes={p: 100 for p in packages},
        budget_bytes=budget,
        cost=SIMPLE_COST,
        **kwargs,
    )


import pytest  # noqa: E402


@pytest.fixture
def make_problem():
    """simple_problem(configs, budget, weights=None, **kwargs) -> Problem"""
    return simple_problem
