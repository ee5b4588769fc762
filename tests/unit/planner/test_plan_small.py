"""Hand-drawn instances with literal answers (see conftest: 10 s and 100 bytes a package, 0.5 s an image)."""

import pytest

from ais.planner.plan import solve_problem

LATTICE = {"A": {1, 2, 3}, "B": {1, 2, 4}, "C": {1, 5}}


def served(plan):
    images = {i.key: set(i.packages) for i in plan.images}
    return {n: (sorted(images[s.image]) if s.image else []) for n, s in plan.serve.items()}


def test_budget_for_one_shared_image(make_problem):
    # {1,2} saves 19.5 s for A and B (39 s); {1} saves 9.5 s for all three (28.5 s)
    plan = solve_problem(make_problem(LATTICE, budget=200))
    assert served(plan) == {"A": ["1", "2"], "B": ["1", "2"], "C": []}
    assert plan.objective == pytest.approx(80 - 39)
    assert plan.serve["A"].remainder == ("3",)
    assert plan.serve["C"].predicted_seconds == pytest.approx(20.0)
    assert plan.status == "optimal" and plan.gap == pytest.approx(0, abs=1e-6)


def test_budget_for_two_images(make_problem):
    # {1,2} + {1} = 300 bytes: 39 + 9.5 = 48.5 s saved; A alone (300 bytes) saves only 29.5 s
    plan = solve_problem(make_problem(LATTICE, budget=300))
    assert served(plan) == {"A": ["1", "2"], "B": ["1", "2"], "C": ["1"]}
    assert plan.objective == pytest.approx(80 - 48.5)


def test_weights_change_the_answer(make_problem):
    # C reinstalled 10x as often: {1,5} for C (195 s) beats {1,2} for A and B (39 s)
    plan = solve_problem(make_problem(LATTICE, budget=200, weights={"A": 1, "B": 1, "C": 10}))
    assert served(plan) == {"A": [], "B": [], "C": ["1", "5"]}
    assert plan.objective == pytest.approx(30 + 30 + 10 * 0.5)


def test_ample_budget_gives_every_configuration_its_own_image(make_problem):
    plan = solve_problem(make_problem(LATTICE, budget=10_000))
    assert served(plan) == {"A": ["1", "2", "3"], "B": ["1", "2", "4"], "C": ["1", "5"]}
    assert plan.objective == pytest.approx(1.5)
    assert all(s.remainder == () for s in plan.serve.values())


def test_budget_below_every_image_gives_packages_only_and_says_so(make_problem):
    plan = solve_problem(make_problem(LATTICE, budget=50))
    assert plan.images == ()
    assert all(s.image is None for s in plan.serve.values())
    assert plan.objective == pytest.approx(80.0)
    assert any("smaller than every image" in w for w in plan.warnings)


def test_baselines_on_the_same_costs(make_problem):
    plan = solve_problem(make_problem(LATTICE, budget=200))
    assert plan.baselines["packages_only"]["objective"] == pytest.approx(80.0)
    per_config = plan.baselines["image_per_configuration"]
    assert per_config["objective"] == pytest.approx(1.5)
    assert per_config["size_bytes"] == 800 and per_config["fits_budget"] is False
    assert plan.baselines["greedy"]["fits_budget"] is True
    assert plan.objective <= plan.baselines["greedy"]["objective"] + 1e-9


def test_a_cut_set_beats_every_intersection_that_fits(make_problem):
    # A and B share {1,2,3,4} (400 bytes) but the budget is 250: only a cut of it
    # ({1,2}: 200 bytes, 19.5 s for both) fits; no intersection of A and B does.
    configs = {"A": {1, 2, 3, 4, 5}, "B": {1, 2, 3, 4, 6}}
    plan = solve_problem(make_problem(configs, budget=250))
    assert plan.objective == pytest.approx(100 - 2 * 19.5)
    assert len(plan.images) == 1 and len(plan.images[0].packages) == 2


def test_installation_base_is_a_candidate(make_problem):
    configs = {"A": {1, 2, 3}, "B": {1, 2, 4}}
    plan = solve_problem(make_problem(configs, budget=100, bases=[frozenset({1})]))
    assert served(plan) == {"A": ["1"], "B": ["1"]}
