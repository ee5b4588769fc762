"""Candidate images: package sets ordered by inclusion, generated and pruned.

What it does: builds the candidate images the optimiser chooses from: the empty
set (install everything by RPM), every installation base, every configuration,
intersections of configurations, and "cut to fit" subsets of valuable
intersections (their most time-saving packages per byte, cut to budget
fractions: under a budget such a set can beat every intersection that fits).
The full intersection closure explodes (60 configurations give thousands of
sets, 1,000 give hundreds of thousands), so intersections are taken only
between near neighbours (smallest symmetric difference), to depth two, and
along "chains" (from a seed configuration, keep intersecting with the
configuration that keeps the most weighted saving: the cores of large groups),
and then pruned:
  - larger than the budget, or saving no time (saving ≤ 0): can never pay off;
  - too small to matter: the most it could ever save, Σ weights served × saving,
    is under `min_share` of the packages-only objective;
  - dominated: another candidate serves the same configurations with at least
    the saving and at most the size;
  - the cap: at most `max_candidates` survive, half ranked by weighted saving
    (value if kept), half by weighted saving per byte (value under a budget);
    the empty set and installation bases always stay.
`inclusion_dag`/`hasse_diagram` give the inclusion order (networkx) of any
family of sets, used by `--explain` and the tests.
What it reads: a `Problem`.
What it fails on: nothing on valid Problems (validation is in problem.py).
What it returns: `Candidates`: bitsets, saving, size, which configurations each
can serve (as flat (config, candidate) pair arrays), and counts. Column
generation (ais/planner/pricing.py) adds priced sets afterwards (`with_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ais.planner.problem import Problem, bit_indices, is_subset

NEIGHBOURS = 5  # near neighbours intersected with each configuration
MAX_CANDIDATES = 2500
MIN_SHARE = 1e-5  # of the packages-only objective
CUT_FRACTIONS = (1.0, 0.5, 0.25, 0.1)  # budget fractions that cut sets are cut to
CUT_SOURCES = 40  # how many top candidates get cut-to-fit variants
FULL_CLOSURE_UP_TO = 16  # configurations: below this the closure is small, take it all
CHAIN_SEEDS = 400  # configurations (by weighted saving) that start a chain
CHAIN_STEPS = 16  # intersections per chain


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate images; index 0 is always the empty set."""

    sets: list[int]
    saving: np.ndarray  # seconds saved per reinstall of a configuration it serves
    size: np.ndarray  # stored bytes (int64)
    pair_config: np.ndarray  # (pair_config[i], pair_cand[i]): candidate ⊆ configuration
    pair_cand: np.ndarray
    considered: int  # distinct sets generated
    pruned: int  # of those, removed by the rules above
    reasons: dict[str, int] = field(default_factory=dict)  # pruned, by rule
    evaluator: object = field(default=None, repr=False)  # computes served sets (pricing reuses it)
    priced: int = 0  # columns added by pricing (ais.planner.pricing)

    def __len__(self) -> int:
        return len(self.sets)


def intersection_closure(sets, limit: int | None = None) -> set[int]:
    """All non-empty intersections of any sub-family of `sets` (bitsets).

    Stops adding once `limit` sets are known (None: no limit).

    >>> sorted(intersection_closure([0b0111, 0b1110, 0b1011]))
    [2, 3, 6, 7, 10, 11, 14]
    """
    sets = [s for s in set(sets) if s]
    closure = set(sets)
    frontier = list(sets)
    while frontier:
        fresh = []
        for x in frontier:
            for c in sets:
                y = x & c
                if y and y not in closure:
                    closure.add(y)
                    fresh.append(y)
                    if limit is not None and len(closure) >= limit:
                        return closure
        frontier = fresh
    return closure


def inclusion_dag(family: dict) -> nx.DiGraph:
    """Edge a -> b when set a is a proper subset of set b (sets: frozensets).

    >>> g = inclusion_dag({"a": frozenset({1}), "b": frozenset({1, 2}), "c": frozenset({1, 2, 3})})
    >>> sorted(g.edges())
    [('a', 'b'), ('a', 'c'), ('b', 'c')]
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(family)
    items = list(family.items())
    for a, sa in items:
        for b, sb in items:
            if a != b and sa < sb:
                graph.add_edge(a, b)
    return graph


def hasse_diagram(family: dict) -> nx.DiGraph:
    """The inclusion order's covering relation (transitive reduction).

    >>> g = hasse_diagram({"a": frozenset({1}), "b": frozenset({1, 2}), "c": frozenset({1, 2, 3})})
    >>> sorted(g.edges())
    [('a', 'b'), ('b', 'c')]
    """
    return nx.transitive_reduction(inclusion_dag(family))


def packed_matrix(problem: Problem, sets) -> np.ndarray:
    """Sets as rows of uint64 words (for vectorised distance computations)."""
    words = (problem.n_packages + 63) // 64 or 1
    buf = b"".join(s.to_bytes(words * 8, "little") for s in sets)
    return np.frombuffer(buf, dtype="<u8").reshape(len(sets), words)


def near_neighbours(problem: Problem, k: int = NEIGHBOURS) -> list[list[int]]:
    """For each configuration, the k others with the smallest symmetric difference."""
    configs = problem.configs
    n = len(configs)
    if n < 2:
        return [[] for _ in configs]
    matrix = packed_matrix(problem, configs)
    k = min(k, n - 1)
    out = []
    block = max(1, 2**22 // max(1, matrix.size))  # keep each block's temporary near 32 MB
    for start in range(0, n, block):
        rows = matrix[start : start + block]
        dist = np.bitwise_count(rows[:, None, :] ^ matrix[None, :, :]).sum(axis=2, dtype=np.int64)
        for r in range(len(rows)):
            dist[r, start + r] = np.iinfo(np.int64).max  # not its own neighbour
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        for r in range(len(rows)):
            order = nearest[r][np.argsort(dist[r, nearest[r]], kind="stable")]
            out.append([int(j) for j in order])
    return out


def raw_candidates(problem: Problem) -> set[int]:
    """Generated sets before pruning: ∅, bases, configurations, intersections."""
    configs = problem.configs
    raw = {0, *problem.bases, *configs}
    everything = configs[0]
    for c in configs[1:]:
        everything &= c
    raw.add(everything)
    if len(set(configs)) <= FULL_CLOSURE_UP_TO:
        raw |= intersection_closure(configs)
        return raw
    for i, near in enumerate(near_neighbours(problem)):
        ci = configs[i]
        pairs = [ci & configs[j] for j in near]
        raw.update(pairs)
        # depth two: the core shared by i and two of its neighbours
        for a in range(len(near)):
            for b in range(a + 1, len(near)):
                raw.add(pairs[a] & configs[near[b]])
    for base in problem.bases:  # bases meet configurations that do not contain them whole
        for c in set(configs):
            raw.add(base & c)
    return raw


def chain_candidates(
    problem: Problem, evaluator: "_Evaluator", seeds: int = CHAIN_SEEDS, steps: int = CHAIN_STEPS
) -> set[int]:
    """Cores of growing groups: from a seed configuration, repeatedly intersect
    with the configuration that keeps the most weighted saving, recording each
    intersection. Neighbour intersections find small groups; these chains find
    the large ones (e.g. every configuration with the same desktop), which are
    what a tight budget wants. Worked in atom space, batched over seeds as one
    matrix product per step.
    """
    n_conf = len(problem.configs)
    member = evaluator.atom_membership  # atoms x configurations (bool)
    if n_conf < 2:
        return set()
    cost = problem.cost
    weights = problem.weights
    atom_rpm = np.bincount(evaluator.atom_of, weights=problem.rpm_seconds, minlength=member.shape[0])
    atom_bytes = np.bincount(evaluator.atom_of, weights=problem.installed_bytes, minlength=member.shape[0])
    conf_atoms = member.T.astype(np.float32)  # configurations x atoms
    own = np.array([problem.saving(c) for c in problem.configs])
    order = np.argsort(-(weights * np.maximum(own, 0)), kind="stable")[: min(seeds, n_conf)]
    current = member[:, order].copy()  # atoms x seeds: the running intersection
    in_group = np.zeros((n_conf, len(order)), dtype=bool)
    in_group[order, np.arange(len(order))] = True
    group_weight = weights[order].astype(float)
    found: set[int] = set()
    for _ in range(steps):
        rpm = conf_atoms @ (atom_rpm[:, None] * current).astype(np.float32)
        size = conf_atoms @ (atom_bytes[:, None] * current).astype(np.float32)
        stored = cost.image_overhead_bytes + cost.stored_factor * size.astype(float)
        saving = rpm - (cost.image_fixed_s + stored / cost.stream_bytes_per_s)
        value = (group_weight[None, :] + weights[:, None]) * saving
        value[in_group] = -np.inf
        pick = np.argmax(value, axis=0)
        alive = value[pick, np.arange(len(order))] > 0
        if not alive.any():
            break
        cols = np.flatnonzero(alive)
        current[:, cols] &= member[:, pick[cols]]
        in_group[pick[cols], cols] = True
        group_weight[cols] += weights[pick[cols]]
        current[:, ~alive] = False  # a dead chain stays dead
        for col in cols:
            found.add(evaluator.bits_of_atoms(current[:, col]))
    found.discard(0)
    return found


class _Evaluator:
    """Saving, size and served configurations of sets, computed fast.

    Served sets use "atoms": packages grouped by which configurations hold them.
    A set is in configuration c iff every atom it touches is, so one AND per
    touched atom (hundreds) replaces one test per configuration (thousands).
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        n_conf = len(problem.configs)
        member = np.zeros((problem.n_packages, n_conf), dtype=bool)
        for i, c in enumerate(problem.configs):
            member[problem.mask(c), i] = True
        packed = np.packbits(member, axis=1, bitorder="little")
        signatures, self.atom_of = np.unique(packed, axis=0, return_inverse=True)
        self.atom_of = self.atom_of.ravel()
        self.atom_configs = [int.from_bytes(row.tobytes(), "little") for row in signatures]
        self.atom_membership = np.unpackbits(signatures, axis=1, bitorder="little")[:, :n_conf].astype(bool)
        self.all_configs = (1 << n_conf) - 1

    def bits_of_atoms(self, atoms: np.ndarray) -> int:
        """Package bitset of the packages in the given atoms (bool over atoms)."""
        mask = atoms[self.atom_of]
        return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")

    def served(self, s: int) -> int:
        """Bitset over configuration indices of those containing s."""
        if not s:
            return self.all_configs
        result = self.all_configs
        for atom in np.unique(self.atom_of[self.problem.mask(s)]):
            result &= self.atom_configs[atom]
            if not result:
                break
        return result


def cut_to_fit(problem: Problem, s: int, target_bytes: int) -> int:
    """The subset of s that keeps its most time-saving packages per byte, cut to fit.

    Packages are taken in decreasing RPM seconds per installed byte until the
    image's estimated stored bytes would pass target_bytes.
    """
    ids = bit_indices(s)
    per_byte = problem.rpm_seconds[ids] / np.maximum(problem.installed_bytes[ids], 1.0)
    order = ids[np.argsort(-per_byte, kind="stable")]
    cost = problem.cost
    room = (target_bytes - cost.image_overhead_bytes) / max(cost.stored_factor, 1e-12)
    taken = np.cumsum(problem.installed_bytes[order]) <= room
    chosen = 0
    for j in order[taken]:
        chosen |= 1 << int(j)
    return chosen


def build_candidates(
    problem: Problem,
    *,
    max_candidates: int = MAX_CANDIDATES,
    min_share: float = MIN_SHARE,
) -> Candidates:
    """Generate, evaluate and prune candidate images (rules in the module doc)."""
    evaluator = _Evaluator(problem)
    raw = raw_candidates(problem) | chain_candidates(problem, evaluator)
    table = _evaluate(problem, evaluator, raw)
    _add_cut_to_fit(problem, evaluator, table)
    considered = len(table)
    reasons: dict[str, int] = {}
    kept = _prune(problem, table, max_candidates, min_share, reasons)
    return _as_candidates(problem, table, kept, considered, reasons, evaluator)


def _evaluate(problem: Problem, evaluator: _Evaluator, sets) -> dict[int, tuple[float, int, int]]:
    """set -> (saving, size, served-configurations bitset); sets are made installable first."""
    table = {}
    for s in {problem.installable(s) for s in sets}:
        if s in table:
            continue
        table[s] = (problem.saving(s), problem.stored_bytes(s), evaluator.served(s))
    return table


def _weight_of(problem: Problem, served: int) -> float:
    idx = bit_indices(served)
    return float(problem.weights[idx].sum()) if len(idx) else 0.0


def _add_cut_to_fit(problem: Problem, evaluator: _Evaluator, table: dict) -> None:
    """Cut the most valuable oversized sets down to fractions of the budget."""
    budget = problem.budget_bytes
    scored = sorted(
        (s for s, (saving, size, _) in table.items() if s and saving > 0),
        key=lambda s: -_weight_of(problem, table[s][2]) * table[s][0],
    )
    sources = list(dict.fromkeys([*problem.bases, *scored[:CUT_SOURCES]]))
    fresh = set()
    for s in sources:
        for fraction in CUT_FRACTIONS:
            target = int(budget * fraction)
            if table.get(s, (0, 0, 0))[1] > target:
                cut = cut_to_fit(problem, s, target)
                if cut and cut not in table:
                    fresh.add(cut)
    table.update(_evaluate(problem, evaluator, fresh))


def _prune(problem: Problem, table: dict, max_candidates: int, min_share: float, reasons: dict) -> list[int]:
    """Apply the pruning rules; return the surviving sets (∅ first)."""
    packages_only = sum(problem.weights[i] * problem.base_time(i) for i in range(len(problem.configs)))
    floor = min_share * packages_only
    always = {0, *(b for b in problem.bases if table[b][1] <= problem.budget_bytes and table[b][0] > 0)}
    useful = {}
    for s, (saving, size, served) in table.items():
        if s in always:
            continue
        if saving <= 0:
            reasons["saves_no_time"] = reasons.get("saves_no_time", 0) + 1
            continue
        if size > problem.budget_bytes:
            reasons["over_budget"] = reasons.get("over_budget", 0) + 1
            continue
        value = _weight_of(problem, served) * saving
        if value <= floor:
            reasons["too_small"] = reasons.get("too_small", 0) + 1
            continue
        useful[s] = value
    survivors = _undominated(table, useful)
    reasons["dominated"] = len(useful) - len(survivors)
    room = max(0, max_candidates - len(always))
    reasons["over_cap"] = max(0, len(survivors) - room)
    if len(survivors) > room:
        by_value = sorted(survivors, key=lambda s: (-useful[s], s))
        by_density = sorted(survivors, key=lambda s: (-useful[s] / max(table[s][1], 1), s))
        chosen = dict.fromkeys(by_value[: room // 2])
        for s in by_density:
            if len(chosen) >= room:
                break
            chosen.setdefault(s)
        survivors = list(chosen)
    return [0, *sorted(always - {0}), *sorted(survivors)]


def _undominated(table: dict, useful: dict) -> list[int]:
    """Drop sets beaten by another serving the same configurations (saving ≥, size ≤)."""
    groups: dict[int, list[int]] = {}
    for s in useful:
        groups.setdefault(table[s][2], []).append(s)
    out = []
    for members in groups.values():
        # scan by size ascending: keep a set only if it saves more than every smaller one
        members.sort(key=lambda s: (table[s][1], -table[s][0], s))
        best = -np.inf
        for s in members:
            if table[s][0] > best:
                out.append(s)
                best = table[s][0]
    return out


def _as_candidates(
    problem: Problem, table: dict, kept: list[int], considered: int, reasons: dict, evaluator=None
) -> Candidates:
    pair_config, pair_cand = [], []
    for k, s in enumerate(kept):
        idx = bit_indices(table[s][2]) if s else np.arange(len(problem.configs))
        pair_config.append(idx)
        pair_cand.append(np.full(len(idx), k, dtype=np.int64))
    return Candidates(
        sets=kept,
        saving=np.array([table[s][0] if s else 0.0 for s in kept]),
        size=np.array([table[s][1] if s else 0 for s in kept], dtype=np.int64),
        pair_config=np.concatenate(pair_config),
        pair_cand=np.concatenate(pair_cand),
        considered=considered,
        pruned=considered - len(kept),
        reasons={k: v for k, v in reasons.items() if v},
        evaluator=evaluator,
    )


def with_sets(problem: Problem, cands: Candidates, extra: list[tuple[int, float, int, int]]) -> Candidates:
    """cands plus new sets given as (set, saving, size, served-configurations bitset)."""
    sets = list(cands.sets)
    pair_config, pair_cand = [cands.pair_config], [cands.pair_cand]
    for s, _, _, served in extra:
        idx = bit_indices(served)
        pair_config.append(idx)
        pair_cand.append(np.full(len(idx), len(sets), dtype=np.int64))
        sets.append(s)
    return Candidates(
        sets=sets,
        saving=np.concatenate([cands.saving, [e[1] for e in extra]]),
        size=np.concatenate([cands.size, np.array([e[2] for e in extra], dtype=np.int64)]),
        pair_config=np.concatenate(pair_config),
        pair_cand=np.concatenate(pair_cand),
        considered=cands.considered + len(extra),
        pruned=cands.pruned,
        reasons=cands.reasons,
        evaluator=cands.evaluator,
        priced=cands.priced + len(extra),
    )


def check_subsets(problem: Problem, cands: Candidates) -> bool:
    """Every pair really is candidate ⊆ configuration (used by tests)."""
    return all(
        is_subset(cands.sets[k], problem.configs[c]) for c, k in zip(cands.pair_config, cands.pair_cand)
    )
