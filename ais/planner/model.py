"""The optimiser: budgeted facility location as one integer program, built once.

What it does: `PlanModel(problem, cands)` writes the program into a HiGHS model
(highspy, HiGHS's own Python interface, public API only) as arrays:
  keep_k ∈ [0,1]          image k is kept (∅ is always available, no column);
                          integral only for the final solve
  serve_c_k ∈ [0,1]       configuration c is served by k, only for k ⊆ c
  serves_<c>:             Σ_k serve_c_k = 1
  uses_kept_<k>_<c>:      serve_c_k − keep_k ≤ 0   (the strong linking: tight LP)
  fits_budget:            Σ_k size_k keep_k ≤ budget
  minimise                Σ_c w_c Σ_k (t(c,∅) − saving_k) serve_c_k
serve may stay continuous: once keep is integral, serving each configuration
from its best kept image is an optimal vertex, so only keep is branched on.
Configurations of weight 0 get only ∅ (they cannot change the objective); the
plan later gives them their best kept image anyway.
Column generation works on the same model: `relax()` solves the LP relaxation
and returns its duals, `extend(cands)` appends the priced candidates' columns
and rows; `solve(warm)` then makes keep integral, passes the warm start
(`Highs.setSolution`) and solves with a time limit and a relative-gap target,
reporting HiGHS's proven bound. `names()` gives every column and row its
domain name (for `write`, and for reading a model by eye).
CBC (PuLP's bundled solver) is the fallback when HiGHS is missing or fails:
`to_pulp` translates the same arrays into a PuLP problem (public API) with the
same named constraints; PuLP's CBC reports no MIP bound, so the LP relaxation's
bound is used.
What it reads: a `Problem`, its `Candidates`, a warm-start list of kept indices.
What it fails on: never raises for a solver failure: a missing solver, a crash
or a time-out comes back as a `Solved` with a status and warnings.
What it returns: `Solved`: kept candidate indices, status, objective, best bound;
`Relaxed`: duals and keep values of the LP relaxation.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ais.planner.heuristics import base_times
from ais.planner.lattice import Candidates
from ais.planner.problem import Problem

REL_GAP = 5e-4  # stop when the proven gap is this small (relative, on total seconds)
FEASIBLE = 2  # HiGHS kSolutionStatusFeasible


@dataclass
class Solved:
    kept: list[int]
    status: str  # optimal | time_limit | no_solution | no_solver | error
    solver: str
    objective: float | None  # of the solver's incumbent, None if it has none
    bound: float | None  # proven lower bound on the objective over these candidates
    warnings: list[str] = field(default_factory=list)


@dataclass
class Relaxed:
    """The LP relaxation: π per configuration, λ per byte, objective, keep values (index 0: ∅)."""

    pi: np.ndarray
    lam: float
    objective: float
    keep: np.ndarray


def sanitize(name: str) -> str:
    """A solver-safe name part (letters, digits, _ . -)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


class PlanModel:
    """The integer program of the module docstring, as one HiGHS model."""

    def __init__(self, problem: Problem, cands: Candidates):
        import highspy

        self.problem = problem
        self.base = base_times(problem)
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.inf = highspy.kHighsInf
        n_conf = len(problem.configs)
        self.n_cands = 1  # candidates with columns so far (∅ needs none)
        self.keep_col: list[int] = [-1]  # column of keep_k; ∅ has none
        self.pairs: list[tuple[int, int]] = []  # (c, k) of each serve column, in column order
        self.serve_col: list[int] = []
        self.link_row: dict[int, int] = {}  # serve column -> its uses_kept row
        # serves_c rows come first, then fits_budget; the ∅ column of every configuration
        self.highs.addRows(n_conf, np.ones(n_conf), np.ones(n_conf), 0, np.zeros(0, np.int32),
                           np.zeros(0, np.int32), np.zeros(0))
        self.budget_row = n_conf
        self.highs.addRow(-self.inf, float(problem.budget_bytes), 0, np.zeros(0, np.int32), np.zeros(0))
        self._add_serve_columns([(c, 0) for c in range(n_conf)],
                                problem.weights * (self.base - float(cands.saving[0])))
        self.extend(cands)

    @property
    def n_cols(self) -> int:
        return self.highs.getNumCol()

    def extend(self, cands: Candidates) -> None:
        """Add the columns and rows of candidates beyond those already in the model."""
        new = range(self.n_cands, len(cands))
        if not len(new):
            return
        first = self.n_cols
        sizes = cands.size[self.n_cands:].astype(float)
        self.highs.addCols(len(new), np.zeros(len(new)), np.zeros(len(new)), np.ones(len(new)), len(new),
                           np.arange(len(new), dtype=np.int32),
                           np.full(len(new), self.budget_row, dtype=np.int32), sizes)
        self.keep_col.extend(range(first, first + len(new)))
        fresh = cands.pair_cand >= self.n_cands
        weights = self.problem.weights
        pairs = [(c, k) for c, k in zip(cands.pair_config[fresh].tolist(), cands.pair_cand[fresh].tolist())
                 if weights[c] > 0]
        self.n_cands = len(cands)
        if not pairs:
            return
        c_idx = np.array([c for c, _ in pairs])
        k_idx = np.array([k for _, k in pairs])
        cost = weights[c_idx] * (self.base[c_idx] - cands.saving[k_idx])
        cols = self._add_serve_columns(pairs, cost)
        keeps = np.array([self.keep_col[k] for k in k_idx], dtype=np.int32)
        first_row = self.highs.getNumRow()
        n = len(pairs)
        self.highs.addRows(n, np.full(n, -self.inf), np.zeros(n), 2 * n, (2 * np.arange(n)).astype(np.int32),
                           np.column_stack([cols, keeps]).ravel().astype(np.int32), np.tile([1.0, -1.0], n))
        self.link_row.update(zip(cols.tolist(), range(first_row, first_row + n)))

    def _add_serve_columns(self, pairs: list[tuple[int, int]], cost: np.ndarray) -> np.ndarray:
        """serve_c_k columns with cost, in [0, 1], with their entry in serves_c."""
        n = len(pairs)
        first = self.n_cols
        rows = np.array([c for c, _ in pairs], dtype=np.int32)
        self.highs.addCols(n, np.asarray(cost, dtype=float), np.zeros(n), np.ones(n), n,
                           np.arange(n, dtype=np.int32), rows, np.ones(n))
        cols = np.arange(first, first + n)
        self.pairs.extend(pairs)
        self.serve_col.extend(cols.tolist())
        return cols

    # ---------------------------------------------------------------- solving

    def relax(self) -> Relaxed | None:
        """Solve the LP relaxation (keep continuous); None if HiGHS does not reach optimality."""
        import highspy

        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        solution = self.highs.getSolution()
        dual = np.array(solution.row_dual)
        n_conf = len(self.problem.configs)
        pi = self.problem.weights * self.base - dual[:n_conf]
        lam = max(0.0, -float(dual[self.budget_row]))
        values = np.array(solution.col_value)
        keep = np.concatenate([[1.0], values[self.keep_col[1:]]]) if self.n_cands > 1 else np.ones(1)
        return Relaxed(pi, lam, self.highs.getInfo().objective_function_value, keep)

    def kept_from(self, values) -> list[int]:
        values = np.asarray(values)
        return [k for k in range(1, self.n_cands) if values[self.keep_col[k]] > 0.5]

    def warm_values(self, cands: Candidates, kept: list[int]) -> np.ndarray:
        """Column values of the plan that keeps `kept` (each c on its best kept image)."""
        from ais.planner.heuristics import best_assignment

        choice = best_assignment(self.problem, cands, kept)
        values = np.zeros(self.n_cols)
        chosen = set(kept)
        for k in range(1, self.n_cands):
            values[self.keep_col[k]] = 1.0 if k in chosen else 0.0
        modelled = set(self.pairs)
        for (c, k), col in zip(self.pairs, self.serve_col):
            target = int(choice[c]) if (c, int(choice[c])) in modelled else 0
            values[col] = 1.0 if k == target else 0.0
        return values

    def solve_highs(self, warm: np.ndarray, time_limit: float, threads: int | None) -> Solved:
        import highspy

        h = self.highs
        keeps = np.array(self.keep_col[1:], dtype=np.int32)
        h.changeColsIntegrality(len(keeps), keeps, np.full(len(keeps), highspy.HighsVarType.kInteger))
        h.setOptionValue("time_limit", float(time_limit))
        h.setOptionValue("mip_rel_gap", REL_GAP)
        if threads:
            h.setOptionValue("threads", int(threads))
        h.setSolution(len(warm), np.arange(len(warm), dtype=np.int32), np.asarray(warm, dtype=float))
        h.run()
        info = h.getInfo()
        has_solution = info.primal_solution_status == FEASIBLE
        text = h.modelStatusToString(h.getModelStatus())
        status = {"Optimal": "optimal", "Time limit reached": "time_limit"}.get(text, text)
        bound = info.mip_dual_bound
        bound = bound if bound is not None and math.isfinite(bound) else None
        notes = [] if status == "optimal" else [f"HiGHS stopped: {text}"]
        kept = self.kept_from(h.getSolution().col_value) if has_solution else []
        return Solved(kept, status if has_solution else "no_solution", "highs",
                      info.objective_function_value if has_solution else None, bound, notes)

    # ---------------------------------------------------------------- names, CBC

    def names(self) -> tuple[list[str], list[str]]:
        """Domain names of every column and row, in model order."""
        conf = [sanitize(n) for n in self.problem.names]
        cols = [""] * self.n_cols
        for k in range(1, self.n_cands):
            cols[self.keep_col[k]] = f"keep_{k}"
        for (c, k), col in zip(self.pairs, self.serve_col):
            cols[col] = f"serve_{c}_{k}"
        rows = [""] * self.highs.getNumRow()
        for c, name in enumerate(conf):
            rows[c] = f"serves_{name}_{c}"
        rows[self.budget_row] = "fits_budget"
        for (c, k), col in zip(self.pairs, self.serve_col):
            if col in self.link_row:
                rows[self.link_row[col]] = f"uses_kept_{k}_{conf[c]}_{c}"
        return cols, rows

    def to_pulp(self):
        """The same program as a PuLP problem, every constraint named (for CBC)."""
        import pulp

        col_names, row_names = self.names()
        lp = pulp.LpProblem("ais_plan", pulp.LpMinimize)
        lp_model = self.highs.getLp()
        keep_cols = set(self.keep_col[1:])
        variables = [lp.add_variable(name, 0, 1, cat=pulp.LpBinary if j in keep_cols else pulp.LpContinuous)
                     for j, name in enumerate(col_names)]
        costs = lp_model.col_cost_
        lp.setObjective(pulp.LpAffineExpression([(variables[j], costs[j]) for j in range(len(variables))]))
        rows: list[list] = [[] for _ in row_names]
        matrix = lp_model.a_matrix_
        for j in range(len(variables)):
            for p in range(matrix.start_[j], matrix.start_[j + 1]):
                rows[matrix.index_[p]].append((variables[j], matrix.value_[p]))
        lower, upper = lp_model.row_lower_, lp_model.row_upper_
        for i, name in enumerate(row_names):
            expr = pulp.LpAffineExpression(rows[i])
            if lower[i] == upper[i]:
                lp.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=upper[i]), name)
            else:
                lp.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=upper[i]), name)
        return lp, variables

    def solve_cbc(self, warm: np.ndarray, time_limit: float, threads: int | None) -> Solved:
        import pulp

        lp, variables = self.to_pulp()
        # CBC through PuLP reports no bound: take the LP relaxation's, a valid one.
        lp.solve(_cbc(msg=False, mip=False, timeLimit=time_limit))
        bound = pulp.value(lp.objective) if lp.status == pulp.LpStatusOptimal else None
        for var, value in zip(variables, warm):
            var.setInitialValue(float(value))
        lp.solve(_cbc(msg=False, timeLimit=time_limit, gapRel=REL_GAP, warmStart=True, threads=threads))
        solved = lp.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        status = "optimal" if lp.sol_status == pulp.LpSolutionOptimal else "time_limit"
        objective = pulp.value(lp.objective) if solved else None
        if status == "optimal" and objective is not None:
            bound = objective if bound is None else max(bound, objective * (1 - REL_GAP))
        notes = [] if status == "optimal" else ["CBC stopped before proving optimality; bound is the LP relaxation's"]
        kept = self.kept_from([v.varValue or 0 for v in variables]) if solved else []
        return Solved(kept, status if solved else "no_solution", "cbc", objective, bound, notes)


def available_solvers() -> list[str]:
    """Solvers usable here, best first: 'highs' (highspy) and 'cbc' (PuLP's bundled CBC)."""
    out = []
    try:
        import highspy  # noqa: F401

        out.append("highs")
    except ImportError:
        pass
    try:
        if _cbc(msg=False).available():
            out.append("cbc")
    except ImportError:
        pass
    return out


def solve_model(
    model: PlanModel,
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
    values = model.warm_values(cands, warm)
    try:
        if name == "highs":
            return model.solve_highs(values, time_limit, threads)
        return model.solve_cbc(values, time_limit, threads)
    except Exception as err:  # a solver crash must not lose the plan: report it
        return Solved([], "error", name, None, None, [f"{name} failed: {type(err).__name__}: {err}"])


def _cbc(**options):
    """PuLP's bundled CBC (deprecated for PuLP 4, still the bundled fallback in 3.3)."""
    import pulp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**options)
