"""The plan: which images to keep, which serves each configuration, and proof.

What it does: `make_plan` runs the planner end to end (problem → candidates →
greedy → ILP → plan); `solve_problem` does the same on a plain `Problem` (the
benchmark uses it). The result is an `ais.contracts.Plan` (its schema, with
`to_json`/`from_json`, is the contract with the cache). `check_plan_matches` recomputes the hash of the inputs.
What it reads: a `Site`, a budget, a `CostModel`, optional measured stored sizes
(frozenset of nevras → bytes) of package sets already built.
What it fails on: bad input (no configurations, hosts naming unknown ones) →
`BadInput`; a plan file of another format → `BadInput`; a plan made from other
inputs → `PlanMismatch`. Solver trouble never raises: the plan falls back to
the greedy plan (never worse than greedy) with a warning in `warnings`.
What it returns: `Plan`.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
from msgspec.structs import asdict

from ais.contracts import Plan, PlanImage, Serving
from ais.errors import PlanMismatch
from ais.cost import CostModel
from ais.planner.heuristics import base_times, baselines, best_assignment, best_greedy, objective_of
from ais.planner.lattice import Candidates, build_candidates
from ais.planner.model import PlanModel, Solved, solve_model
from ais.planner.pricing import ROUNDS as PRICE_ROUNDS
from ais.planner.pricing import price
from ais.planner.problem import Problem, ids_of, problem_from_site

MIN_SOLVER_SECONDS = 5.0


def inputs_hash(identities: dict[str, list[str]], weights: dict[str, float], budget: int, cost: CostModel) -> str:
    """sha256 of configurations' package identities, weights, budget and costs."""
    data = {
        "configurations": {n: sorted(ids) for n, ids in sorted(identities.items())},
        "weights": {n: round(float(w), 9) for n, w in sorted(weights.items())},
        "budget_bytes": int(budget),
        "cost": asdict(cost),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def site_hash(site, budget: int, cost: CostModel) -> str:
    identities = {c.name: [p.identity for p in c.packages] for c in site.configurations}
    return inputs_hash(identities, site.weights(), budget, cost)


def check_plan_matches(plan: Plan, site, cost: CostModel | None = None) -> None:
    """Raise PlanMismatch when the plan was made from other descriptors or costs."""
    expected = site_hash(site, plan.budget_bytes, cost or CostModel())
    if plan.inputs_hash != expected:
        raise PlanMismatch(
            "the plan does not match the current descriptors (packages, hosts or costs changed "
            "since it was made): run ais plan again"
        )


def make_plan(
    site,
    budget_bytes: int,
    *,
    cost: CostModel | None = None,
    known_sizes=None,
    time_limit: float = 60.0,
    solver: str | None = None,
) -> Plan:
    """Plan the image cache of a site within budget_bytes of stored images."""
    cost = cost or CostModel()
    problem = problem_from_site(site, budget_bytes, cost, known_sizes)
    return solve_problem(problem, site_hash(site, budget_bytes, cost), time_limit=time_limit, solver=solver)


def solve_problem(
    problem: Problem,
    hash_: str = "",
    *,
    time_limit: float = 60.0,
    solver: str | None = None,
    max_candidates: int | None = None,
    threads: int | None = None,
    price_rounds: int = PRICE_ROUNDS,
) -> Plan:
    """Candidates (generated, pruned, then priced), greedy, ILP; the better of greedy and ILP becomes the plan."""
    # time_limit covers the whole planning: pricing may use a third of it,
    # the solver gets what is left (at least MIN_SOLVER_SECONDS)
    started = time.monotonic()
    options = {} if max_candidates is None else {"max_candidates": max_candidates}
    cands = build_candidates(problem, **options)
    model = PlanModel(problem, cands) if len(cands) > 1 else None
    keep_values = None
    if model is not None and price_rounds:
        cands, keep_values = price(problem, cands, model, price_rounds, deadline=started + time_limit / 3)
    if keep_values is not None:
        keep_values = np.concatenate([keep_values, np.zeros(len(cands) - len(keep_values))])
    warm = best_greedy(problem, cands, keep_values)
    warnings: list[str] = []
    if not problem.weights.any():
        warnings.append("no host is reinstalled (every configuration has weight 0): nothing to gain from images")
    if len(cands) == 1:
        solved = Solved([], "optimal", "none", None, None)
        if cands.reasons.get("over_budget"):
            warnings.append(
                "the budget is smaller than every image that would save time: "
                "packages-only plan (every configuration installed by RPM)"
            )
        else:
            warnings.append(
                "no image would save time under this cost model (packages too small for the fixed "
                "imaging cost): packages-only plan"
            )
    else:
        left = max(MIN_SOLVER_SECONDS, time_limit - (time.monotonic() - started))
        solved = solve_model(model, cands, warm, time_limit=left, solver=solver, threads=threads)
        warnings += solved.warnings
    return _assemble(problem, cands, warm, solved, hash_, warnings)


def _assemble(problem: Problem, cands: Candidates, warm, solved: Solved, hash_: str, warnings) -> Plan:
    greedy_objective = objective_of(problem, cands, warm)
    kept = solved.kept
    objective = objective_of(problem, cands, kept) if solved.objective is not None else None
    status = solved.status
    if objective is None or objective > greedy_objective + 1e-6:
        if solved.objective is not None or solved.status != "optimal":
            warnings.append(f"solver gave no better plan ({solved.status}): using the greedy plan")
        kept, objective = warm, greedy_objective
    bound = solved.bound if solved.bound is not None else _trivial_bound(problem, cands)
    bound = min(bound, objective)  # the bound is on the same objective; never report one above the plan
    gap = (objective - bound) / objective if objective > 0 else 0.0
    choice = best_assignment(problem, cands, kept)
    used = sorted(set(int(k) for k in choice) - {0})
    keys = {k: f"k{n}" for n, k in enumerate(used)}
    images = tuple(
        PlanImage(key=keys[k], packages=tuple(sorted(problem.nevras[j] for j in ids_of(cands.sets[k]))),
                  size_bytes=int(cands.size[k]))
        for k in used
    )
    base = base_times(problem)
    serve = {}
    for c, name in enumerate(problem.names):
        k = int(choice[c])
        remainder = ids_of(problem.configs[c] & ~cands.sets[k])
        serve[name] = Serving(image=keys.get(k), remainder=tuple(sorted(problem.nevras[j] for j in remainder)),
                              predicted_seconds=round(float(base[c] - cands.saving[k]), 6))
    return Plan(
        inputs_hash=hash_,
        budget_bytes=problem.budget_bytes,
        images=images,
        serve=serve,
        objective=round(float(objective), 6),
        bound=round(float(bound), 6),
        gap=round(float(gap), 9),
        status=status,
        solver=solved.solver,
        baselines=baselines(problem, cands),
        candidates={"considered": cands.considered, "pruned": cands.pruned, **cands.reasons, "priced": cands.priced},
        warnings=tuple(warnings),
    )


def _trivial_bound(problem: Problem, cands: Candidates) -> float:
    """Σ w_c (t(c,∅) − best saving of any candidate ⊆ c): valid without a solver."""
    best = np.zeros(len(problem.configs))
    np.maximum.at(best, cands.pair_config, cands.saving[cands.pair_cand])
    return float(np.dot(problem.weights, base_times(problem) - best))
