"""Brute-force optimum on small random instances, and plan invariants (hypothesis)."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ais.cost import CostModel
from ais.planner.heuristics import objective_of
from ais.planner.lattice import build_candidates, intersection_closure
from ais.planner.plan import solve_problem
from ais.planner.problem import ids_of, problem_from_sets

COST = CostModel(transaction_s=1.0, host_files_s=0.5, image_fixed_s=2.0, stream_bytes_per_s=50.0,
                 stored_factor=0.6, image_overhead_bytes=5)


def random_problem(rng: random.Random, n_configs: int, n_packages: int, budget_share: float):
    configs = {f"c-{i}": frozenset(rng.sample(range(n_packages), rng.randint(1, n_packages))) for i in range(n_configs)}
    weights = {n: rng.choice([0.0, 0.5, 1.0, 3.0]) for n in configs}
    rpm = {p: rng.uniform(0.1, 5.0) for p in range(n_packages)}
    size = {p: rng.randint(1, 100) for p in range(n_packages)}
    disk = sum(COST.estimate_stored_bytes(sum(size[p] for p in s)) for s in configs.values())
    return problem_from_sets(configs, weights=weights, rpm_seconds=rpm, installed_bytes=size,
                             budget_bytes=int(disk * budget_share), cost=COST)


def brute_force_best(problem, sets):
    """Best objective over every subset of `sets` that fits the budget."""
    useful = [s for s in sets if problem.stored_bytes(s) <= problem.budget_bytes and problem.saving(s) > 0]
    best = float("inf")
    for r in range(len(useful) + 1):
        for kept in itertools.combinations(useful, r):
            if sum(problem.stored_bytes(s) for s in kept) > problem.budget_bytes:
                continue
            total = 0.0
            for i, c in enumerate(problem.configs):
                saving = max([0.0] + [problem.saving(s) for s in kept if s & ~c == 0])
                total += problem.weights[i] * (problem.base_time(i) - saving)
            best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_ilp_matches_brute_force_over_its_candidates(seed):
    rng = random.Random(seed)
    problem = random_problem(rng, rng.randint(2, 4), rng.randint(3, 7), rng.choice([0.15, 0.3, 0.6]))
    cands = build_candidates(problem)
    if len(cands) > 14:
        pytest.skip("too many candidates to enumerate")
    plan = solve_problem(problem)
    assert plan.objective == pytest.approx(brute_force_best(problem, cands.sets[1:]), rel=1e-6, abs=1e-6)
    # the candidates include the whole closure here, so this is also the lattice optimum
    closure = intersection_closure(problem.configs)
    if len(closure) <= 14:
        assert plan.objective <= brute_force_best(problem, closure) + 1e-6


problems = st.builds(
    lambda seed, n, p, share: random_problem(random.Random(seed), n, p, share),
    st.integers(0, 10**6), st.integers(1, 8), st.integers(1, 12), st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.5]),
)


@settings(max_examples=40, deadline=None)
@given(problems)
def test_every_plan_is_valid_and_its_objective_is_recomputable(problem):
    plan = solve_problem(problem, time_limit=10)
    images = {i.key: i for i in plan.images}
    assert sum(i.size_bytes for i in plan.images) <= problem.budget_bytes
    total = 0.0
    for c, name in enumerate(problem.names):
        config = {problem.nevras[j] for j in ids_of(problem.configs[c])}
        s = plan.serve[name]
        image = set(images[s.image].packages) if s.image else set()
        assert image <= config
        assert set(s.remainder) == config - image
        # the predicted time from scratch: RPM for the remainder, imaging for the image
        # (a fresh filesystem without one), and the fixed finish
        rpm = sum(problem.rpm_seconds[problem.nevras.index(p)] for p in s.remainder)
        imaging = COST.fresh_fs_s
        if image:
            installed = sum(problem.installed_bytes[problem.nevras.index(p)] for p in image)
            assert images[s.image].size_bytes == COST.estimate_stored_bytes(installed)
            imaging = COST.image_seconds(images[s.image].size_bytes) + COST.finish_per_image_byte_s * installed
        expected = COST.transaction_s + COST.host_files_s + rpm + imaging + COST.finish_s
        assert s.predicted_seconds == pytest.approx(expected, rel=1e-6, abs=1e-5)
        total += problem.weights[c] * expected
    assert plan.objective == pytest.approx(total, rel=1e-6, abs=1e-5)
    assert plan.bound <= plan.objective + 1e-6
    assert plan.objective <= plan.baselines["greedy"]["objective"] + 1e-6
    assert plan.objective <= plan.baselines["packages_only"]["objective"] + 1e-6


@settings(max_examples=15, deadline=None)
@given(problems)
def test_candidates_serve_only_supersets(problem):
    cands = build_candidates(problem)
    for c, k in zip(cands.pair_config, cands.pair_cand):
        assert cands.sets[k] & ~problem.configs[c] == 0
    # and every subset relation among configurations is listed
    listed = set(zip(cands.pair_config.tolist(), cands.pair_cand.tolist()))
    for k, s in enumerate(cands.sets):
        for c, conf in enumerate(problem.configs):
            assert ((c, k) in listed) == (s & ~conf == 0)
    assert objective_of(problem, cands, []) == pytest.approx(
        sum(problem.weights[i] * problem.base_time(i) for i in range(len(problem.configs)))
    )
