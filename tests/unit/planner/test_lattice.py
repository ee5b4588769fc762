from ais.planner.lattice import (
    build_candidates,
    check_subsets,
    cut_to_fit,
    hasse_diagram,
    inclusion_dag,
    intersection_closure,
)
from ais.planner.problem import bits_of, ids_of


def test_intersection_closure_of_three_sets():
    a, b, c = bits_of([0, 1, 2]), bits_of([1, 2, 3]), bits_of([0, 1, 3])
    assert sorted(map(tuple, (ids_of(s) for s in intersection_closure([a, b, c])))) == [
        (0, 1), (0, 1, 2), (0, 1, 3), (1,), (1, 2), (1, 2, 3), (1, 3)
    ]


def test_intersection_closure_stops_at_the_limit():
    sets = [bits_of(range(i, i + 10)) for i in range(10)]
    assert len(intersection_closure(sets, limit=12)) == 12


def test_hasse_diagram_of_a_diamond():
    family = {
        "base": frozenset({1}),
        "web": frozenset({1, 2}),
        "db": frozenset({1, 3}),
        "web+db": frozenset({1, 2, 3}),
    }
    assert sorted(inclusion_dag(family).edges()) == [
        ("base", "db"), ("base", "web"), ("base", "web+db"), ("db", "web+db"), ("web", "web+db")
    ]
    assert sorted(hasse_diagram(family).edges()) == [
        ("base", "db"), ("base", "web"), ("db", "web+db"), ("web", "web+db")
    ]


def test_candidates_of_a_hand_drawn_lattice(make_problem):
    problem = make_problem({"A": {1, 2, 3}, "B": {1, 2, 4}, "C": {1, 5}}, budget=10_000)
    cands = build_candidates(problem)
    named = {frozenset(problem.nevras[i] for i in ids_of(s)) for s in cands.sets}
    # ∅, the three configurations, and the intersections {1,2} and {1}
    assert named == {
        frozenset(), frozenset({"1", "2", "3"}), frozenset({"1", "2", "4"}), frozenset({"1", "5"}),
        frozenset({"1", "2"}), frozenset({"1"}),
    }
    assert cands.sets[0] == 0
    assert check_subsets(problem, cands)


def test_candidates_larger_than_the_budget_are_pruned(make_problem):
    problem = make_problem({"A": {1, 2, 3}, "B": {1, 2, 4}}, budget=250)
    cands = build_candidates(problem)
    assert all(size <= 250 for size in cands.size)
    assert cands.pruned >= 2  # A and B (300 bytes each) cannot fit
    assert cands.considered == cands.pruned + len(cands)


def test_cut_to_fit_keeps_the_most_time_per_byte(make_problem):
    problem = make_problem({"A": {1, 2, 3}}, budget=10_000)
    # make package 3 huge: it is the one cut away
    problem.installed_bytes[problem.nevras.index("3")] = 10_000
    cut = cut_to_fit(problem, problem.configs[0], 250)
    assert sorted(problem.nevras[i] for i in ids_of(cut)) == ["1", "2"]


def test_cap_keeps_the_empty_set_and_at_most_the_cap(make_problem):
    configs = {f"c{i}": set(range(i, i + 6)) for i in range(30)}
    problem = make_problem(configs, budget=10_000)
    cands = build_candidates(problem, max_candidates=10)
    assert len(cands) <= 10
    assert cands.sets[0] == 0
