import random

import numpy as np
import pytest

from ais.planner.lattice import build_candidates, check_subsets
from ais.planner.plan import solve_problem
from ais.planner.pricing import lp_duals, price, reduced_cost


def clustered_problem(make_problem, seed=0, groups=4, per_group=6, budget=2500):
    """Configurations = a shared base + a group core + a few private packages."""
    rng = random.Random(seed)
    configs = {}
    for g in range(groups):
        core = set(range(100 + 20 * g, 100 + 20 * g + 12))
        for i in range(per_group):
            private = set(rng.sample(range(1000, 1100), 4))
            configs[f"g{g}-{i}"] = set(range(6)) | core | private
    return make_problem(configs, budget=budget, weights={n: rng.choice([1.0, 2.0, 5.0]) for n in configs})


def test_lp_bound_is_below_the_plan(make_problem):
    problem = clustered_problem(make_problem)
    cands = build_candidates(problem)
    pi, lam, lp_objective, keep = lp_duals(problem, cands)
    plan = solve_problem(problem, price_rounds=0)
    assert lp_objective <= plan.objective + 1e-6
    assert lam >= 0 and len(keep) == len(cands) and keep[0] == 1.0


def test_priced_columns_are_valid_and_had_positive_reduced_cost(make_problem):
    problem = clustered_problem(make_problem, seed=3, budget=1800)
    cands = build_candidates(problem, max_candidates=1)  # start from ∅ alone: pricing must find the rest
    assert len(cands) == 1
    pi, lam, _, _ = lp_duals(problem, cands)
    priced, _ = price(problem, cands, rounds=1)
    assert len(priced) > len(cands) and priced.priced == len(priced) - len(cands)
    assert check_subsets(problem, priced)
    for s in priced.sets[len(cands):]:
        served = priced.evaluator.served(s)
        assert reduced_cost(problem, served, problem.saving(s), problem.stored_bytes(s), pi, lam) > 0


@pytest.mark.parametrize("seed", range(3))
def test_pricing_never_makes_the_plan_worse(make_problem, seed):
    problem = clustered_problem(make_problem, seed=seed, budget=1500 + 500 * seed)
    without = solve_problem(problem, price_rounds=0)
    with_pricing = solve_problem(problem)
    assert with_pricing.objective <= without.objective * (1 + 1e-3)
    assert np.isfinite(with_pricing.bound)


def test_pricing_from_nothing_finds_the_group_cores(make_problem):
    problem = clustered_problem(make_problem, seed=1, budget=1800)
    full = solve_problem(problem)
    cands = build_candidates(problem, max_candidates=1)
    priced, _ = price(problem, cands, rounds=6)
    from ais.planner.heuristics import best_greedy, objective_of

    # the greedy over priced columns alone is within 5% of the full planner
    assert objective_of(problem, priced, best_greedy(problem, priced)) <= full.objective * 1.05
