
import pytest

from ais.errors import BadInput, PlanMismatch
from ais.model import Configuration, Host, Package, Site
from ais.cost import CostModel
from ais.planner.plan import Plan, check_plan_matches, make_plan, solve_problem


def pkg(name, size=100_000_000):  # 300 MB installed: worth imaging
    return Package(name, 0, "1.0", "1", "x86_64", f"RPMS/{name}.rpm", size, size * 3, 40, 1, "d" * 64)


def conf(name, names, kind="system"):
    return Configuration(name, "base", kind, tuple(sorted(pkg(n) for n in names)), f"scd/{name}.xml")


def host(name, scd, reinstalls=1.0):
    return Host(name, ("52:54:00:00:00:01",), scd, reinstalls, (), None, f"hcd/{name}.xml")


def site(hosts=None):
    configs = (conf("base", ["glibc", "bash"], "base"), conf("web-3", ["glibc", "bash", "httpd", "php"]),
               conf("db-1", ["glibc", "bash", "postgres"]))
    hosts = hosts if hosts is not None else (host("w1", "web-3", 2.0), host("d1", "db-1"))
    return Site(configs, hosts, tuple({p for c in configs for p in c.packages}))


def test_make_plan_from_a_site():
    plan = make_plan(site(), 10 * 2**30)
    assert set(plan.serve) == {"base", "web-3", "db-1"}
    assert plan.objective <= plan.baselines["packages_only"]["objective"]
    assert plan.serve["web-3"].image is not None


def test_no_configurations_is_bad_input():
    with pytest.raises(BadInput, match="no configurations"):
        make_plan(Site((), (), ()), 2**30)


def test_hosts_pointing_to_nothing_is_bad_input():
    with pytest.raises(BadInput, match="do not exist: mail-9"):
        make_plan(site((host("m1", "mail-9"),)), 2**30)


def test_json_round_trip():
    plan = make_plan(site(), 10 * 2**30)
    assert Plan.from_json(plan.to_json()) == plan


def test_plan_of_other_descriptors_is_detected():
    plan = make_plan(site(), 10 * 2**30)
    check_plan_matches(plan, site())
    with pytest.raises(PlanMismatch):
        check_plan_matches(plan, site((host("w1", "web-3", 5.0),)))
    with pytest.raises(PlanMismatch):
        check_plan_matches(plan, site(), CostModel(rpm_per_file_s=1.0))


def test_garbage_plan_file_is_bad_input():
    with pytest.raises(BadInput):
        Plan.from_json('{"format": 1}')


def test_known_sizes_override_the_estimate():
    s = site()
    web = s.configuration("web-3").nevras
    plan = make_plan(s, 10 * 2**30, known_sizes={web: 12345})
    sizes = {frozenset(i.packages): i.size_bytes for i in plan.images}
    assert sizes.get(web) == 12345


def test_missing_solver_gives_the_greedy_plan_and_a_warning(make_problem):
    problem = make_problem({"A": {1, 2, 3}, "B": {1, 2, 4}, "C": {1, 5}}, budget=200)
    plan = solve_problem(problem, solver="gurobi-not-here")
    assert plan.status == "no_solver"
    assert any("not available" in w for w in plan.warnings)
    assert plan.objective == pytest.approx(41.0)  # greedy finds the optimum here
    assert plan.bound <= plan.objective


def test_cbc_fallback_agrees_with_highs(make_problem):
    problem = make_problem({"A": {1, 2, 3}, "B": {1, 2, 4}, "C": {1, 5}}, budget=300)
    highs = solve_problem(problem, solver="highs")
    cbc = solve_problem(problem, solver="cbc")
    assert cbc.solver == "cbc" and highs.solver == "highs"
    assert cbc.objective == pytest.approx(highs.objective)
    assert cbc.bound <= cbc.objective + 1e-9


def test_frozen():
    plan = make_plan(site(), 2**30)
    with pytest.raises(AttributeError):  # frozen
        plan.objective = 0
