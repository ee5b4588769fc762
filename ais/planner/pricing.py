"""Column generation: add candidate images that the LP duals say are worth it.

What it does: solves the LP relaxation of the integer program over the current
candidates (highspy directly: it is an inner step, the final model is PuLP's),
reads the duals — π_c, the weighted saving configuration c already gets, and
λ, the value of a byte of budget — and searches for package sets S with a
positive reduced cost
    Σ_{c ⊇ S} max(0, w_c · saving(S) − π_c) − λ · size(S) > 0,
i.e. images that would lower the LP objective. The search (the pricing
problem) is heuristic: chains of intersections from the configurations with
the largest unmet value, each step taking the configuration that keeps the
largest gross priced value (the Σ max(0, ...) part), recording the sets whose
net value is positive; cut-to-fit variants of those, too. Rounds repeat until
no column prices out or the round limit.
Because pricing is heuristic, the bound the solver proves afterwards is over
the final candidate set, not over every possible package set.
What it reads: a `Problem`, `Candidates` (with their evaluator).
What it fails on: nothing: an LP failure just ends the rounds.
What it returns: new `Candidates` (the old ones plus the priced columns).
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from ais.planner.lattice import Candidates, _bit_indices, cut_to_fit, with_sets
from ais.planner.problem import Problem

ROUNDS = 4
SEEDS = 300
STEPS = 16
MAX_NEW_PER_ROUND = 400
BRANCH = 6  # first partners tried per seed


def lp_duals(problem: Problem, cands: Candidates) -> tuple[np.ndarray, float, float, np.ndarray] | None:
    """(π per configuration, λ per byte, LP objective, keep values) of the LP relaxation, or None."""
    n_conf, n_cand = len(problem.configs), len(cands)
    base = np.array([problem.base_time(i) for i in range(n_conf)])
    pc, pk = cands.pair_config, cands.pair_cand
    n_pairs = len(pc)
    # columns: keep_1..keep_{K-1}, then one serve per pair
    n_keep = n_cand - 1
    cost = np.concatenate([np.zeros(n_keep), problem.weights[pc] * (base[pc] - cands.saving[pk])])
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.addVars(n_keep + n_pairs, np.zeros(n_keep + n_pairs), np.ones(n_keep + n_pairs))
    highs.changeColsCost(n_keep + n_pairs, np.arange(n_keep + n_pairs, dtype=np.int32), cost)
    serve_col = n_keep + np.arange(n_pairs)
    # serves_c rows: Σ serve = 1, one row per configuration
    order = np.argsort(pc, kind="stable")
    counts = np.bincount(pc, minlength=n_conf)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    highs.addRows(n_conf, np.ones(n_conf), np.ones(n_conf), n_pairs, starts.astype(np.int32),
                  serve_col[order].astype(np.int32), np.ones(n_pairs))
    # links: serve − keep ≤ 0 for pairs with a real image
    linked = np.flatnonzero(pk > 0)
    idx = np.column_stack([serve_col[linked], pk[linked] - 1]).ravel().astype(np.int32)
    vals = np.tile([1.0, -1.0], len(linked))
    highs.addRows(len(linked), np.full(len(linked), -highspy.kHighsInf), np.zeros(len(linked)), len(idx),
                  (2 * np.arange(len(linked))).astype(np.int32), idx, vals)
    # fits_budget
    highs.addRow(-highspy.kHighsInf, float(problem.budget_bytes), n_keep, np.arange(n_keep, dtype=np.int32),
                 cands.size[1:].astype(float))
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = highs.getSolution()
    dual = np.array(solution.row_dual)
    u = dual[:n_conf]
    lam = max(0.0, -dual[-1])
    pi = problem.weights * base - u
    keep = np.concatenate([[1.0], np.array(solution.col_value[:n_keep])])  # index 0: ∅
    return pi, lam, highs.getInfo().objective_function_value, keep


def _priced_chains(problem: Problem, cands: Candidates, pi: np.ndarray, lam: float) -> set[int]:
    """Chains of intersections guided by the reduced cost (see module doc)."""
    ev = cands.evaluator
    member = ev.atom_membership
    weights, cost = problem.weights, problem.cost
    n_conf = len(problem.configs)
    atom_rpm = np.bincount(ev.atom_of, weights=problem.rpm_seconds, minlength=member.shape[0])
    atom_bytes = np.bincount(ev.atom_of, weights=problem.installed_bytes, minlength=member.shape[0])
    conf_atoms = member.T.astype(np.float32)
    own = np.array([problem.saving(c) for c in problem.configs])
    unmet = weights * own - pi
    seeds = np.argsort(-unmet, kind="stable")[: min(SEEDS, n_conf)]
    seeds = seeds[unmet[seeds] > 0] if (unmet[seeds] > 0).any() else seeds[:1]
    current = member[:, seeds].copy()
    groups = seeds[:, None].astype(np.int64)  # chains x members: every chain grows by one a step
    found: set[int] = set()
    for step in range(STEPS):
        n_chains = current.shape[1]
        rpm = conf_atoms @ (atom_rpm[:, None] * current).astype(np.float32)
        size = cost.image_overhead_bytes + cost.stored_factor * (
            conf_atoms @ (atom_bytes[:, None] * current).astype(np.float32)).astype(float)
        saving = rpm - (cost.image_fixed_s + size / cost.stream_bytes_per_s)
        # choose partners by the gross value (ignoring λ·size): with the penalty the
        # first step always jumps to the tiny shared base, the largest cut in size
        value = np.maximum(0.0, weights[:, None] * saving - pi[:, None])
        chains = np.arange(n_chains)
        for col in groups.T:
            value += np.maximum(0.0, weights[col][None, :] * saving - pi[col][None, :])
        for col in groups.T:
            value[col, chains] = -np.inf
        value[saving <= 0] = -np.inf
        # branch at the first step: the first partner decides the group (e.g. the
        # patch-level twin vs. a configuration at the same patch level), and a
        # greedy chain would only ever try the nearest one
        width = min(BRANCH if step == 0 else 1, n_conf - groups.shape[1])
        if width <= 0:
            break
        picks = np.argsort(-value, axis=0, kind="stable")[:width]  # width x chains
        pick_value = np.take_along_axis(value, picks, axis=0)
        ok = np.isfinite(pick_value)
        if not ok.any():
            break
        branch, chain = np.nonzero(ok)
        partner = picks[branch, chain]
        current = current[:, chain] & member[:, partner]
        groups = np.column_stack([groups[chain], partner])
        net = pick_value[branch, chain] - lam * size[partner, chain]
        for b in np.flatnonzero(net > 0):
            found.add(ev.bits_of_atoms(current[:, b]))
    found.discard(0)
    return found


def reduced_cost(problem: Problem, served: int, saving: float, size: int, pi: np.ndarray, lam: float) -> float:
    idx = _bit_indices(served)
    return float(np.maximum(0.0, problem.weights[idx] * saving - pi[idx]).sum()) - lam * size


def price(
    problem: Problem, cands: Candidates, rounds: int = ROUNDS, deadline: float | None = None
) -> tuple[Candidates, np.ndarray | None]:
    """Add priced columns for up to `rounds` rounds or until `deadline` (monotonic).

    Returns the candidates and the last LP's keep values (indexed like the
    candidates it was solved over; new columns come after), for LP rounding.
    """
    keep = None
    for _ in range(rounds):
        if deadline is not None and time.monotonic() > deadline:
            break
        duals = lp_duals(problem, cands)
        if duals is None:
            break
        pi, lam, _, keep = duals
        known = set(cands.sets)
        fresh = _priced_chains(problem, cands, pi, lam) - known
        # cut-to-fit variants: under a tight budget a smaller core may price out better
        for s in list(fresh):
            for fraction in (0.5, 0.25):
                cut = cut_to_fit(problem, s, int(problem.stored_bytes(s) * fraction))
                if cut and cut not in known:
                    fresh.add(cut)
        fresh = {problem.installable(s) for s in fresh} - known
        scored = []
        for s in fresh:
            size = problem.stored_bytes(s)
            saving = problem.saving(s)
            if size > problem.budget_bytes or saving <= 0:
                continue
            served = cands.evaluator.served(s)
            rc = reduced_cost(problem, served, saving, size, pi, lam)
            if rc > 1e-6:
                scored.append((rc, s, saving, size, served))
        if not scored:
            break
        scored.sort(key=lambda t: (-t[0], t[1]))
        cands = with_sets(problem, cands, [t[1:] for t in scored[:MAX_NEW_PER_ROUND]])
    return cands, keep
