"""The optimiser: budgeted facility location as an integer program (PuLP).

What it does: `build_model` writes the ILP over the candidates; `solve_model`
solves it with HiGHS (highspy through PuLP) or, as the fallback, PuLP's bundled
CBC, chosen explicitly and checked for availability, with a time limit and a
relative-gap target, warm-started from the greedy plan.
  keep_k ∈ {0,1}          image k is kept (∅ is always available, no variable)
  serve_c_k ∈ [0,1]       configuration c is served by k, only for k ⊆ c
  serves_<c>:             Σ_k serve_c_k = 1
  uses_kept_<k>_<c>:      serve_c_k ≤ keep_k   (the strong linking: tight LP)
  fits_budget:            Σ_k size_k keep_k ≤ budget
  minimise                Σ_c w_c Σ_k (t(c,∅) − saving_k) serve_c_k
serve may be continuous: once keep is integral, serving each configuration from
its best kept image is an optimal vertex, so only keep is branched on.
Configurations of weight 0 get only ∅ in the model (they cannot change the
objective); the plan later gives them their best kept image anyway.
What it reads: a `Problem`, its `Candidates`, a warm-start list of kept indices.
What it fails on: never raises for a solver failure: a missing solver, a crash
or a time-out comes back as a `Solved` with a status and warnings.
What it returns: `Solved`: kept candidate indices, status, objective, best bound.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pulp

from ais.planner.heuristics import base_times
from ais.planner.lattice import Candidates
from ais.planner.problem import Problem

REL_GAP = 5e-4  # stop when the proven gap is this small (relative, on total seconds)


@dataclass
class Model:
    lp: pulp.LpProblem
    keep: dict[int, pulp.LpVariable]
    serve: dict[tuple[int, int], pulp.LpVariable]


@dataclass
class Solved:
    kept: list[int]
    status: str  # optimal | time_limit | no_solution | no_solver | error
    solver: str
    objective: float | None  # of the solver's incumbent, None if it has none
    bound: float | None  # proven lower bound on the objective over these candidates
    warnings: list[str] = field(default_factory=list)


def sanitize(name: str) -> str:
    """A PuLP-safe constraint name part (letters, digits, _ . -)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def build_model(problem: Problem, cands: Candidates) -> Model:
    """The ILP described in the module docstring."""
    lp = pulp.LpProblem("ais_plan", pulp.LpMinimize)
    base = base_times(problem)
    keep = {k: lp.add_variable(f"keep_{k}", 0, 1, cat=pulp.LpBinary) for k in range(1, len(cands))}
    serve: dict[tuple[int, int], pulp.LpVariable] = {}
    by_config: dict[int, list[int]] = {}
    for c, k in zip(cands.pair_config.tolist(), cands.pair_cand.tolist()):
        if k == 0 or problem.weights[c] > 0:
            by_config.setdefault(c, []).append(k)
    objective = []
    names = [sanitize(n) for n in problem.names]
    for c, ks in by_config.items():
        for k in ks:
            var = lp.add_variable(f"serve_{c}_{k}", 0, 1)
            serve[c, k] = var
            objective.append((var, float(problem.weights[c] * (base[c] - cands.saving[k]))))
            if k:
                lp.addConstraint(
                    pulp.LpConstraint(pulp.LpAffineExpression([(var, 1), (keep[k], -1)]), pulp.LpConstraintLE, rhs=0),
                    f"uses_kept_{k}_{names[c]}_{c}",
                )
        lp.addConstraint(
            pulp.LpConstraint(pulp.LpAffineExpression([(serve[c, k], 1) for k in ks]), pulp.LpConstraintEQ, rhs=1),
            f"serves_{names[c]}_{c}",
        )
    lp.setObjective(pulp.LpAffineExpression(objective))
    lp.addConstraint(
        pulp.LpConstraint(
            pulp.LpAffineExpression([(keep[k], int(cands.size[k])) for k in keep]),
            pulp.LpConstraintLE,
            rhs=problem.budget_bytes,
        ),
        "fits_budget",
    )
    return Model(lp, keep, serve)


class _WarmHiGHS(pulp.HiGHS):
    """PuLP's HiGHS, plus a warm start (PuLP 3.3 passes none) and bound capture."""

    def __init__(self, warm: dict[str, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.warm = warm or {}
        self.info: dict = {}

    def callSolver(self, lp):
        highs = lp.solverModel
        if self.warm:
            cols = [v.index for v in lp.variables() if v.name in self.warm]
            vals = [self.warm[v.name] for v in lp.variables() if v.name in self.warm]
            highs.setSolution(len(cols), np.array(cols, dtype=np.int32), np.array(vals, dtype=np.float64))
        highs.run()
        info = highs.getInfo()
        self.info = {
            "status": highs.modelStatusToString(highs.getModelStatus()),
            "bound": info.mip_dual_bound,
            "objective": info.objective_function_value,
            "primal_status": info.primal_solution_status,
        }


def warm_values(model: Model, problem: Problem, cands: Candidates, kept: list[int]) -> dict[str, float]:
    """Variable values of the plan that keeps `kept` (each c on its best kept image)."""
    from ais.planner.heuristics import best_assignment

    choice = best_assignment(problem, cands, kept)
    values = {v.name: (1.0 if k in kept else 0.0) for k, v in model.keep.items()}
    for (c, k), var in model.serve.items():
        target = choice[c] if (c, int(choice[c])) in model.serve else 0
        values[var.name] = 1.0 if k == target else 0.0
    return values


def available_solvers() -> list[str]:
    """Solvers usable here, best first: 'highs' (highspy) and 'cbc' (bundled)."""
    out = []
    if pulp.HiGHS(msg=False).available():
        out.append("highs")
    if _cbc(msg=False).available():
        out.append("cbc")
    return out


def solve_model(
    model: Model,
    problem: Problem,
    cands: Candidates,
    warm: list[int],
    *,
    time_limit: float = 60.0,
    solver: str | None = None,
    threads: int | None = None,
) -> Solved:
    """Solve with the named solver (default: HiGHS, else CBC); never raises."""
    choices = available_solvers()
    if solver is not None and solver not in choices:
        return Solved([], "no_solver", solver, None, None, [f"solver {solver} is not available here"])
    if not choices:
        return Solved([], "no_solver", "none", None, None, ["no MIP solver available (HiGHS, CBC)"])
    name = solver or choices[0]
    values = warm_values(model, problem, cands, warm)
    try:
        if name == "highs":
            return _solve_highs(model, values, time_limit, threads)
        return _solve_cbc(model, values, time_limit, threads)
    except Exception as err:  # a solver crash must not lose the plan: report it
        return Solved([], "error", name, None, None, [f"{name} failed: {type(err).__name__}: {err}"])


def _cbc(**options) -> pulp.LpSolver:
    """PuLP's bundled CBC (deprecated for PuLP 4, still the bundled fallback in 3.3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**options)


def _kept_from(model: Model) -> list[int]:
    return sorted(k for k, v in model.keep.items() if (v.varValue or 0) > 0.5)


def _solve_highs(model: Model, warm: dict, time_limit: float, threads: int | None) -> Solved:
    engine = _WarmHiGHS(warm=warm, msg=False, timeLimit=time_limit, gapRel=REL_GAP, threads=threads)
    model.lp.solve(engine)
    info = engine.info
    has_solution = info.get("primal_status", 0) == 2  # kSolutionStatusFeasible
    status = {"Optimal": "optimal", "Time limit reached": "time_limit"}.get(info.get("status"), info.get("status", "?"))
    bound = info.get("bound")
    bound = bound if bound is not None and math.isfinite(bound) else None
    notes = [] if status == "optimal" else [f"HiGHS stopped: {info.get('status')}"]
    return Solved(
        _kept_from(model) if has_solution else [],
        status if has_solution else "no_solution",
        "highs",
        info.get("objective") if has_solution else None,
        bound,
        notes,
    )


def _solve_cbc(model: Model, warm: dict, time_limit: float, threads: int | None) -> Solved:
    # CBC through PuLP reports no bound: take the LP relaxation's, a valid one.
    relaxed = _cbc(msg=False, mip=False, timeLimit=time_limit)
    model.lp.solve(relaxed)
    bound = pulp.value(model.lp.objective) if model.lp.status == pulp.LpStatusOptimal else None
    for var in model.lp.variables():
        if var.name in warm:
            var.setInitialValue(warm[var.name])
    engine = _cbc(
        msg=False, timeLimit=time_limit, gapRel=REL_GAP, warmStart=True, threads=threads
    )
    model.lp.solve(engine)
    solved = model.lp.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    status = "optimal" if model.lp.sol_status == pulp.LpSolutionOptimal else "time_limit"
    objective = pulp.value(model.lp.objective) if solved else None
    if status == "optimal" and objective is not None:
        bound = objective if bound is None else max(bound, objective * (1 - REL_GAP))
    notes = [] if status == "optimal" else ["CBC stopped before proving optimality; bound is the LP relaxation's"]
    kept = _kept_from(model) if solved else []
    return Solved(kept, status if solved else "no_solution", "cbc", objective, bound, notes)
