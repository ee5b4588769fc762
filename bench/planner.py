"""Planner benchmark on a real Debian corpus (run by `make bench-planner`).

What it does: for 50, 200, 1,000 and 5,000 configurations built from this
machine's Debian package metadata (bench/debian_corpus.py) and budgets of 10,
25 and 50% of the disk that one image per configuration needs, runs the
planner in a fresh child process per case and prints: candidates, solve wall
time, peak memory (the child's ru_maxrss from os.wait4: one process per case,
so figures do not mix), the plan's objective, bound and gap, and each
baseline's objective and how much the plan beats it.
What it reads: /var/lib/apt/lists (through the corpus module); caches the
parsed corpus in build/bench/corpus.pickle.
What it fails on: missing Packages lists (run apt-get update).
What it returns: prints a markdown table; exit 0.

Options: --scales 50,200 --fractions 0.1,0.25 to run a part; --json FILE to
keep the raw figures. `--site real` (`make bench-planner SITE=real`) plans the real site
instead (descriptors-real over build/real-repo, `make real-site`): its 14 configurations as
they are (weights from its hosts), and multiplied: copy j of each configuration at patch
level j (a seeded tenth of its non-base packages replaced by a new version of the same
size, as a security update would), its hosts scaled by a seeded lognormal count; the
scales are then the number of configurations (default 14, 56, 224, 896). (A child is started with subprocess.Popen, not ais.run,
because the peak memory of exactly that child is needed: os.wait4.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

CORPUS_CACHE = ROOT / "build" / "bench" / "corpus.pickle"
SCALES = (50, 200, 1000, 5000)
REAL_SCALES = (14, 56, 224, 896)
FRACTIONS = (0.10, 0.25, 0.50)


def time_limit_for(n: int) -> float:
    # 1,000 configurations: the whole run must fit in 60 s; 5,000: in 10 minutes
    return 45.0 if n <= 1000 else 480.0


def real_sets(n: int, seed: int = 7):
    """The real site's configurations, multiplied by patch levels and host counts up to n."""
    import random

    from ais.descriptors import load_site

    site = load_site(ROOT / "descriptors-real", ROOT / "build" / "real-repo")
    weights0 = site.weights()
    facts = {p.nevra: (p.installed_size, p.file_count, p.scriptlets)
             for c in site.configurations for p in c.packages}
    bases = [frozenset(c.nevras) for c in site.configurations if c.kind == "base"]
    base_of = {c.name: frozenset(site.configuration(c.base).nevras) if c.kind != "base" else frozenset()
               for c in site.configurations}
    rng = random.Random(seed)
    configs, weights = {}, {}
    level = 0
    while len(configs) < n:
        for c in site.configurations:
            if len(configs) >= n:
                break
            own = sorted(set(c.nevras) - base_of[c.name])
            patched = set(rng.sample(own, max(1, len(own) // 10))) if level and own else set()
            name = f"{c.name}@p{level}" if level else c.name
            configs[name] = frozenset(f"{k}.p{level}" if k in patched else k for k in c.nevras)
            for k in patched:
                facts[f"{k}.p{level}"] = facts[k]
            weights[name] = round(max(1.0, weights0.get(c.name, 0) or 1.0) *
                                  (1 if not level else max(1, int(rng.lognormvariate(1.0, 1.0)))), 3)
        level += 1
    return configs, weights, facts, bases


def run_case(n: int, fraction: float, site: str = "corpus") -> dict:
    """In the child: build the corpus (or real-site) problem, plan it, return the figures."""
    from debian_corpus import load_corpus

    from ais.cost import CostModel
    from ais.planner.plan import solve_problem
    from ais.planner.problem import problem_from_sets

    started = time.monotonic()
    if site == "real":
        configs, weights, facts, bases = real_sets(n)
    else:
        corpus = load_corpus(CORPUS_CACHE)
        configs, weights, facts, bases = corpus.to_sets(n)
    cost = CostModel()
    rpm = {k: cost.rpm_seconds(*f) for k, f in facts.items()}
    size = {k: f[0] for k, f in facts.items()}

    def problem(budget: int):
        return problem_from_sets(configs, weights=weights, rpm_seconds=rpm, installed_bytes=size,
                                 budget_bytes=budget, cost=cost, bases=bases)

    full = problem(0)
    disk = sum(full.stored_bytes(s) for s in set(full.configs))
    prob = problem(int(disk * fraction))
    setup = time.monotonic() - started
    started = time.monotonic()
    plan = solve_problem(prob, time_limit=time_limit_for(n))
    solve = time.monotonic() - started
    packages_only = plan.baselines["packages_only"]["objective"]
    saved, saved_bound = packages_only - plan.objective, packages_only - plan.bound
    return {
        "configurations": n,
        "packages": prob.n_packages,
        "mean_packages": round(sum(c.bit_count() for c in prob.configs) / len(prob.configs), 1),
        "fraction": fraction,
        "budget_bytes": prob.budget_bytes,
        "setup_s": round(setup, 2),
        "solve_s": round(solve, 2),
        "candidates": plan.candidates,
        "images": len(plan.images),
        "size_bytes": plan.size_bytes,
        "objective": plan.objective,
        "bound": plan.bound,
        "gap": plan.gap,
        # the same gap relative to the seconds saved against packages only (the part the plan controls)
        "saving_gap": (saved_bound - saved) / saved_bound if saved_bound > 0 else 0.0,
        "status": plan.status,
        "solver": plan.solver,
        "baselines": plan.baselines,
        "warnings": list(plan.warnings),
    }


def measure(n: int, fraction: float, site: str = "corpus") -> dict:
    """Run one case in a child; add its wall time and peak memory."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--case", str(n), str(fraction), "--site", site],
                             stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        return {"configurations": n, "fraction": fraction, "error": f"child exited {child.returncode}"}
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = round(time.monotonic() - started, 2)
    result["peak_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    return result


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    import pulp
    from importlib.metadata import version
    return (f"{cpu}, {os.cpu_count()} cores, {mem / 2**20:.0f} GiB RAM, {platform.platform()}, "
            f"Python {platform.python_version()}, PuLP {pulp.__version__}, highspy {version('highspy')}")


def pct(base: float, plan: float) -> str:
    return f"{100 * (base - plan) / base:+.2f}%" if base else "n/a"


def table(results: list[dict]) -> str:
    head = ("| configs | budget | candidates (considered/pruned/kept) | images | solve s | wall s | peak MiB "
            "| objective s | bound s | gap | gap on saving | status | vs packages only | vs image per config "
            "| vs greedy |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['configurations']} | {r['fraction']:.0%} | {r['error']} |")
            continue
        c, b = r["candidates"], r["baselines"]
        kept = c["considered"] - c["pruned"]

        def vs(key: str) -> str:
            base = b[key]
            note = "" if base["fits_budget"] else " (over budget)"
            return f"{base['objective']:.0f}: {pct(base['objective'], r['objective'])}{note}"

        lines.append(
            f"| {r['configurations']} | {r['fraction']:.0%} = {r['budget_bytes'] / 2**30:.0f} GiB "
            f"| {c['considered']}/{c['pruned']}/{kept} | {r['images']} | {r['solve_s']:.1f} | {r['wall_s']:.1f} "
            f"| {r['peak_mib']:.0f} | {r['objective']:.0f} | {r['bound']:.0f} | {100 * r['gap']:.4f}% "
            f"| {100 * r['saving_gap']:.3f}% | {r['status']} | {vs('packages_only')} "
            f"| {vs('image_per_configuration')} | {vs('greedy')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=2, metavar=("N", "FRACTION"), help=argparse.SUPPRESS)
    parser.add_argument("--site", choices=("corpus", "real"), default="corpus",
                        help="the Debian corpus (default) or the real site's configurations")
    parser.add_argument("--scales", default=None, help=f"default {SCALES} (real: {REAL_SCALES})")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), float(args.case[1]), args.site)))
        return 0
    args.scales = args.scales or ",".join(map(str, REAL_SCALES if args.site == "real" else SCALES))
    if args.site == "corpus":
        from debian_corpus import load_corpus

        load_corpus(CORPUS_CACHE)  # parse the lists once, outside the measured children
    print(f"machine: {machine()}")
    results = []
    for n in map(int, args.scales.split(",")):
        for fraction in map(float, args.fractions.split(",")):
            result = measure(n, fraction, args.site)
            results.append(result)
            print(f"  {n} configurations, budget {fraction:.0%}: "
                  f"{result.get('status', result.get('error'))} in {result.get('wall_s', 0):.1f} s", flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
