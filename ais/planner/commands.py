"""`ais plan`: choose the images to cache within a disk budget, and say why.

What it does: loads the site (descriptors + repository), runs `make_plan`,
prints a table (images kept, sizes, which configurations each serves, predicted
time per configuration, totals, baselines on the same costs, bound and gap)
or the plan JSON (`--json`), writes the plan JSON to `--out`, and with
`--explain CONFIG` says why that configuration got its image.
What it reads: --descriptors, --repo, --budget, --cost (cost model JSON; see cost_for).
What it fails on: bad sizes, unknown --explain configuration (UsageError), bad
descriptors (DescriptorError), no configurations / hosts naming unknown ones
(BadInput); solver trouble is a warning, never an error.
What it returns: exit code 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ais.sizes import human, size_arg
from ais.errors import UsageError, WorldError
from ais.files import write_atomic
from ais.cost import COST_FILE, CostModel, cost_for
from ais.planner.lattice import hasse_diagram
from ais.planner.plan import Plan, make_plan

BASELINE_NAMES = {
    "packages_only": "packages only (Kickstart-like)",
    "image_per_configuration": "one image per configuration",
    "greedy": "greedy benefit per byte",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="choose which package-set images to cache within a disk budget",
        description="Choose the images to cache so that the expected reinstall time over all hosts "
        "is smallest within the budget (integer program, HiGHS; CBC as fallback). Prints the plan, "
        "its proven bound and gap, and the baselines on the same costs.",
    )
    p.add_argument("--budget", required=True, type=size_arg, metavar="SIZE", help="disk for stored images: 20G, 500M or bytes")
    p.add_argument("--out", default="build/plan.json", metavar="FILE", help="plan JSON to write [%(default)s]")
    p.add_argument("--explain", metavar="CONFIG", help="say why this configuration got its image")
    p.add_argument("--json", action="store_true", help="print the plan JSON instead of the table")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS", help="solver time limit [%(default)s]")
    p.add_argument("--cost", metavar="FILE",
                   help=f"cost model from `ais calibrate` [CACHE/{COST_FILE} if present, else built-in defaults]")
    p.set_defaults(handler=plan_command)


def write_plan(out: Path, text: str) -> None:
    """Write the plan file atomically; a path the OS refuses is a failure naming it (exit 1)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, text.encode())
    except OSError as err:
        raise WorldError(f"cannot write the plan to {out}: {err.strerror or err}") from err


def plan_command(args) -> int:
    from ais.descriptors import load_site  # the edge: XML and RPM headers are read there

    budget = args.budget
    if args.time_limit <= 0:
        raise UsageError("--time-limit must be positive")
    cost, source = cost_for(args.cache, args.cost)
    site = load_site(args.descriptors, args.repo)
    if args.explain and args.explain not in {c.name for c in site.configurations}:
        raise UsageError(f"--explain {args.explain}: no such configuration")
    plan = make_plan(site, budget, cost=cost, time_limit=args.time_limit)
    out = Path(args.out)
    write_plan(out, plan.to_json())
    if args.json:
        sys.stdout.write(plan.to_json())
    else:
        print(format_plan(plan, site.weights()))
        print(f"cost model: {source}")
        print(f"plan written to {out}")
    if args.explain:
        from ais.updates.changes import explain_change, published_manifest

        print(explain(plan, site, args.explain, cost))
        print(explain_change(published_manifest(args.cache), site, args.explain, cost,
                             plan.serve[args.explain].predicted_seconds))
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def format_plan(plan: Plan, weights: dict[str, float]) -> str:
    """The human table: images, configurations, totals, baselines."""
    lines = [
        f"plan: {len(plan.images)} images, {human(plan.size_bytes)} of {human(plan.budget_bytes)} budget",
        f"solver {plan.solver}: {plan.status}; expected install time {plan.objective:.1f} s per period, "
        f"bound {plan.bound:.1f}, proven gap {100 * plan.gap:.3f}%",
        f"candidates: {plan.candidates.get('considered', 0)} considered, {plan.candidates.get('pruned', 0)} pruned"
        + _reasons(plan.candidates),
        "",
        f"{'image':<6} {'size':>8} {'packages':>8}  serves",
    ]
    serves: dict[str | None, list[str]] = {}
    for name, s in sorted(plan.serve.items()):
        serves.setdefault(s.image, []).append(name)
    for image in plan.images:
        lines.append(f"{image.key:<6} {human(image.size_bytes):>8} {len(image.packages):>8}  "
                     f"{', '.join(serves.get(image.key, []))}")
    width = max([13] + [len(n) for n in plan.serve])
    lines += ["", f"{'configuration':<{width}} {'image':<6} {'by rpm':>6} {'weight':>8} {'predicted s':>11}"]
    for name, s in sorted(plan.serve.items()):
        lines.append(f"{name:<{width}} {s.image or '-':<6} {len(s.remainder):>6} "
                     f"{weights.get(name, 0):>8.2f} {s.predicted_seconds:>11.1f}")
    lines += ["", "baselines on the same costs:"]
    for key, label in BASELINE_NAMES.items():
        b = plan.baselines.get(key)
        if b:
            fits = "fits" if b["fits_budget"] else "over budget"
            better = (b["objective"] - plan.objective) / b["objective"] * 100 if b["objective"] else 0.0
            lines.append(f"  {label:<32} {b['objective']:>14.1f} s  {human(b['size_bytes']):>8}  {fits:<11}"
                         f"  plan {better:+.2f}% faster")
    return "\n".join(lines)


def _reasons(candidates: dict) -> str:
    parts = [f"{v} {k.replace('_', ' ')}" for k, v in candidates.items() if k not in ("considered", "pruned")]
    return f" ({', '.join(parts)})" if parts else ""


def explain(plan: Plan, site, name: str, cost: CostModel) -> str:
    """Why configuration `name` is served the way it is."""
    config = site.configuration(name).nevras
    serving = plan.serve[name]
    kept = {i.key: frozenset(i.packages) for i in plan.images}
    below = {k: s for k, s in kept.items() if s <= config}
    family = {**below, name: config}
    chain = sorted(hasse_diagram(family).predecessors(name))
    packages = {p.nevra: p for c in site.configurations for p in c.packages}

    def saving(pkgs: frozenset, size: int) -> float:
        rpm = sum(cost.rpm_seconds(packages[p].installed_size, packages[p].file_count, packages[p].scriptlets)
                  for p in pkgs)
        return cost.image_saving(rpm, size, sum(packages[p].installed_size for p in pkgs))

    lines = [f"why {name} is served this way:"]
    if serving.image is None:
        lines.append(f"  no kept image is a subset of {name} and saves time: all {len(config)} packages by RPM")
    else:
        image = plan.image(serving.image)
        lines.append(f"  image {image.key} ({len(image.packages)} packages, {human(image.size_bytes)}) saves "
                     f"{saving(kept[image.key], image.size_bytes):.1f} s per reinstall; "
                     f"{len(serving.remainder)} packages remain for RPM")
    others = sorted(k for k in below if k != serving.image)
    for k in others:
        img = plan.image(k)
        lines.append(f"  kept image {k} also fits inside it but saves less "
                     f"({saving(kept[k], img.size_bytes):.1f} s)")
    if chain:
        lines.append(f"  largest kept images below it (Hasse diagram): {', '.join(chain)}")
    if serving.remainder:
        own = cost.estimate_stored_bytes(sum(packages[p].installed_size for p in config))
        own_saving = saving(config, own)
        if own_saving <= 0:
            lines.append(f"  its own image (about {human(own)}) would cost {-own_saving:.1f} s more than "
                         "installing its packages by RPM")
        else:
            lines.append(f"  its own image (about {human(own)}) would save {own_saving:.1f} s per reinstall "
                         f"but was not worth its disk within the budget for weight "
                         f"{site.weights().get(name, 0):.2f}")
    return "\n".join(lines)
