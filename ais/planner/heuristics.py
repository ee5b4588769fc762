"""Baselines and the greedy heuristic, on the same costs as the optimiser.

What it does: evaluates a choice of kept images (each configuration takes the
kept image ⊆ it with the largest saving), and computes the baselines the plan
is compared with: packages only (Kickstart-like), one image per configuration
(pure imaging, and the disk that needs), and greedy benefit-per-byte. The
greedy also warm-starts the integer program and is the plan of last resort.
What it reads: a `Problem` and its `Candidates`.
What it fails on: nothing (every input has at least the packages-only answer).
What it returns: lists of kept candidate indices, objectives, baseline dicts.
"""

from __future__ import annotations

import numpy as np

from ais.planner.lattice import Candidates
from ais.planner.problem import Problem


def base_times(problem: Problem) -> np.ndarray:
    """t(c, ∅) of every configuration."""
    return np.array([problem.base_time(i) for i in range(len(problem.configs))])


def best_assignment(problem: Problem, cands: Candidates, kept) -> np.ndarray:
    """For each configuration, the kept candidate ⊆ it with the largest saving (0 = ∅)."""
    is_kept = np.zeros(len(cands), dtype=bool)
    is_kept[list(kept)] = True
    is_kept[0] = True
    choice = np.zeros(len(problem.configs), dtype=np.int64)
    best = np.zeros(len(problem.configs))
    sel = is_kept[cands.pair_cand]
    pc, pk = cands.pair_config[sel], cands.pair_cand[sel]
    sav = cands.saving[pk]
    # visit pairs by increasing saving so the last write per configuration wins
    order = np.lexsort((pk, sav))
    choice[pc[order]] = pk[order]
    best[pc[order]] = sav[order]
    choice[best <= 0] = 0
    return choice


def objective_of(problem: Problem, cands: Candidates, kept) -> float:
    """Σ_c w_c t(c, best kept image ⊆ c): expected install seconds per period."""
    choice = best_assignment(problem, cands, kept)
    return float(np.dot(problem.weights, base_times(problem) - cands.saving[choice]))


def used_images(problem: Problem, cands: Candidates, kept) -> list[int]:
    """The kept candidates that serve at least one configuration (others waste disk)."""
    return sorted(set(int(k) for k in best_assignment(problem, cands, kept)) - {0})


def greedy(problem: Problem, cands: Candidates, *, per_byte: bool = True, start=()) -> list[int]:
    """Add the candidate with the best marginal gain (per byte) while it fits.

    Gain of k = Σ_{c ⊇ k} w_c · max(0, saving(k) − saving already given to c).
    `start` is kept first (it must fit).
    """
    weights = problem.weights[cands.pair_config]
    current = np.zeros(len(problem.configs))
    room = problem.budget_bytes
    kept: list[int] = []
    available = np.ones(len(cands), dtype=bool)
    available[0] = False
    for k in start:
        kept.append(int(k))
        available[k] = False
        room -= int(cands.size[k])
        served = cands.pair_config[cands.pair_cand == k]
        current[served] = np.maximum(current[served], cands.saving[k])
    while True:
        lift = np.maximum(0.0, cands.saving[cands.pair_cand] - current[cands.pair_config])
        gain = np.bincount(cands.pair_cand, weights=weights * lift, minlength=len(cands))
        ok = available & (cands.size <= room) & (gain > 1e-9)
        if not ok.any():
            return kept
        score = gain / np.maximum(cands.size, 1) if per_byte else gain
        k = int(np.argmax(np.where(ok, score, -np.inf)))
        kept.append(k)
        available[k] = False
        room -= int(cands.size[k])
        served = cands.pair_config[cands.pair_cand == k]
        current[served] = np.maximum(current[served], cands.saving[k])


def lp_rounding(problem: Problem, cands: Candidates, keep_values) -> list[int]:
    """Keep candidates in decreasing LP keep value while they fit, then fill greedily."""
    order = np.argsort(-np.asarray(keep_values), kind="stable")
    room, start = problem.budget_bytes, []
    for k in order:
        if k == 0 or keep_values[k] < 0.05:
            continue
        if cands.size[k] <= room:
            start.append(int(k))
            room -= int(cands.size[k])
    return greedy(problem, cands, per_byte=True, start=start)


def best_greedy(problem: Problem, cands: Candidates, keep_values=None) -> list[int]:
    """The best of greedy per byte, greedy by gain (the classic budgeted pair) and,
    when LP keep values are given, LP rounding."""
    options = [greedy(problem, cands, per_byte=True), greedy(problem, cands, per_byte=False)]
    if keep_values is not None:
        options.append(lp_rounding(problem, cands, keep_values))
    return min(options, key=lambda kept: objective_of(problem, cands, kept))


def baselines(problem: Problem, cands: Candidates) -> dict[str, dict]:
    """Objective, disk and whether it fits, for each baseline."""
    base = base_times(problem)
    budget = problem.budget_bytes
    packages_only = float(np.dot(problem.weights, base))
    distinct = sorted(set(problem.configs))
    per_config_disk = sum(problem.stored_bytes(s) for s in distinct)
    per_config = float(
        np.dot(problem.weights, base - np.array([problem.saving(s) for s in problem.configs]))
    )
    kept = used_images(problem, cands, greedy(problem, cands, per_byte=True))
    greedy_disk = int(cands.size[kept].sum()) if kept else 0
    return {
        "packages_only": _baseline(packages_only, 0, 0, budget),
        "image_per_configuration": _baseline(per_config, per_config_disk, len(distinct), budget),
        "greedy": _baseline(objective_of(problem, cands, kept), greedy_disk, len(kept), budget),
    }


def _baseline(objective: float, size: int, images: int, budget: int) -> dict:
    return {
        "objective": round(objective, 6),
        "size_bytes": int(size),
        "images": images,
        "fits_budget": size <= budget,
    }
