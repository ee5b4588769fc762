import random

import numpy as np
import pytest

from ais.planner.lattice import build_candidates, check_subsets
from ais.planner.plan import solve_problem
from ais.planner.model import PlanModel
from ais.planner.pricing import price, reduced_cost


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
    relaxed = PlanModel(problem, cands).relax()
    plan = solve_problem(problem, price_rounds=0)
    assert relaxed.objective <= plan.objective + 1e-6
    assert relaxed.lam >= 0 and len(relaxed.keep) == len(cands) and relaxed.keep[0] == 1.0


def test_priced_columns_are_valid_and_had_positive_reduced_cost(make_problem):
    problem = clustered_problem(make_problem, seed=3, budget=1800)
    cands = build_candidates(problem, max_candidates=1)  # start from ∅ alone: pricing must find the rest
    assert len(cands) == 1
    model = PlanModel(problem, cands)
    relaxed = model.relax()
    pi, lam = relaxed.pi, relaxed.lam
    priced, _ = price(problem, cands, model, rounds=1)
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
    priced, _ = price(problem, cands, PlanModel(problem, cands), rounds=6)
    from ais.planner.heuristics import best_greedy, objective_of

    # the greedy over priced columns alone is within 5% of the full planner
    assert objective_of(problem, priced, best_greedy(problem, priced)) <= full.objective * 1.05


def test_a_model_extended_by_pricing_equals_one_built_afresh(make_problem):
    """Column generation appends to the one model: its LP is the LP of the final candidates."""
    problem = clustered_problem(make_problem, seed=2, budget=1800)
    cands = build_candidates(problem, max_candidates=1)
    model = PlanModel(problem, cands)
    priced, _ = price(problem, cands, model, rounds=2)
    assert len(priced) > len(cands)
    grown, fresh = model.relax(), PlanModel(problem, priced).relax()
    assert grown.objective == pytest.approx(fresh.objective, rel=1e-9)
    assert np.allclose(grown.keep, fresh.keep) or grown.objective == pytest.approx(fresh.objective)


def test_every_row_and_column_has_its_domain_name(make_problem):
    problem = make_problem({"web-1": {1, 2, 3}, "web-2": {1, 2, 4}, "db": {1, 5}}, budget=300)
    cands = build_candidates(problem)
    model = PlanModel(problem, cands)
    cols, rows = model.names()
    assert all(cols) and all(rows) and len(set(rows)) == len(rows)
    assert "fits_budget" in rows and any(r.startswith("serves_web-1_") for r in rows)
    assert any(r.startswith("uses_kept_") for r in rows)
    lp, _ = model.to_pulp()
    assert {c.name for c in lp.constraints()} == {r.replace("-", "_") for r in rows}  # PuLP writes - as _
