"""Every image the planner keeps is dependency-closed: rpm can install it alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.descriptors import load_site
from ais.planner.plan import make_plan, solve_problem
from ais.planner.problem import close_bits
from ais.repo.closure import DependencyIndex

from .conftest import SIMPLE_COST

DEMO = Path(__file__).resolve().parents[3] / "descriptors"

# 1 = shell, 2 = httpd (needs ssl: 3 or 4), 3/4 = two patch levels of ssl
WEB = {"web-1": {1, 2, 3}, "web-2": {1, 2, 4}}
SSL = {2: [{3, 4}]}


def served(plan):
    images = {i.key: set(i.packages) for i in plan.images}
    return {n: (sorted(images[s.image]) if s.image else []) for n, s in plan.serve.items()}


def test_close_bits_drops_transitively():
    requires = {1: (0b100,), 2: (0b1000,)}  # 1 needs 2, 2 needs 3
    assert close_bits(0b0111, requires) == 0b0001
    assert close_bits(0b1111, requires) == 0b1111


def test_intersection_missing_a_dependency_is_not_offered(make_problem):
    # Without dependencies {1,2} (saves 19.5 s for both) is best under 200 bytes.
    free = solve_problem(make_problem(WEB, budget=200))
    assert served(free) == {"web-1": ["1", "2"], "web-2": ["1", "2"]}
    # With them, httpd cannot go without an ssl: the shared image shrinks to {1}
    # or one configuration gets its own image; either way every image is closed.
    plan = solve_problem(make_problem(WEB, budget=200, requires=SSL))
    for image in plan.images:
        assert not ("2" in image.packages and not {"3", "4"} & set(image.packages)), image
    assert plan.objective > free.objective


@pytest.mark.parametrize("budget_mib", [20, 40, 60, 120])
def test_demo_plans_keep_only_installable_images(repo_dir, budget_mib):
    site = load_site(DEMO, repo_dir)
    cheap_images = SIMPLE_COST.__class__(image_fixed_s=0.05, stream_bytes_per_s=500e6, stored_factor=0.75,
                                         image_overhead_bytes=0)
    plan = make_plan(site, budget_mib * 2**20, cost=cheap_images, time_limit=20)
    index = DependencyIndex(site.packages)
    assert plan.images, "this cost model should make images pay"
    for image in plan.images:
        assert index.is_closed(frozenset(image.packages)), image.key
