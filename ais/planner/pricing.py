"""Column generation: add candidate images that the LP duals say are worth it.

What it does: solves the LP relaxation of the integer program over the current
candidates (`PlanModel.relax`, the same model the final solve uses), reads the duals — π_c, the weighted saving configuration c already gets, and
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
What it reads: a `Problem`, `Candidates` (with their evaluator), the `PlanModel`
built over them (extended in place with every priced column).
What it fails on: nothing: an LP failure just ends the rounds.
What it returns: new `Candidates` (the old ones plus the priced columns).
"""

from __future__ import annotations

import time

import numpy as np

from ais.planner.lattice import Candidates, cut_to_fit, with_sets
from ais.planner.model import PlanModel
from ais.planner.problem import Problem, bit_indices

ROUNDS = 4
SEEDS = 300
STEPS = 16
MAX_NEW_PER_ROUND = 400
BRANCH = 6  # first partners tried per seed


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
    idx = bit_indices(served)
    return float(np.maximum(0.0, problem.weights[idx] * saving - pi[idx]).sum()) - lam * size


def price(
    problem: Problem, cands: Candidates, model: PlanModel, rounds: int = ROUNDS, deadline: float | None = None
) -> tuple[Candidates, np.ndarray | None]:
    """Add priced columns for up to `rounds` rounds or until `deadline` (monotonic).

    Returns the candidates and the last LP's keep values (indexed like the
    candidates it was solved over; new columns come after), for LP rounding.
    """
    keep = None
    for _ in range(rounds):
        if deadline is not None and time.monotonic() > deadline:
            break
        relaxed = model.relax()
        if relaxed is None:
            break
        pi, lam, keep = relaxed.pi, relaxed.lam, relaxed.keep
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
        model.extend(cands)
    return cands, keep
