"""`ais calibrate`: measure rpm and imaging here, write the cost model file.

What it does: `register(subparsers)` adds `calibrate`; the handler loads the
site, runs `ais.calibrate.measure.calibrate` and writes CACHE/cost.json (or
--out) atomically, printing the fitted coefficients and how well they explain
their own samples.
What it reads: --descriptors, --repo, --cache. What it fails on: bad input
(exit 2) from the site; tool failures (exit 1) from the measurements.
What it returns: exit code 0.
"""

from __future__ import annotations

from pathlib import Path

from ais.cost import COST_FILE


def register(subparsers) -> None:
    """Add `ais calibrate`."""
    parser = subparsers.add_parser(
        "calibrate", help="measure rpm and imaging speed here; write the cost model",
        description="Install every configuration (and unions of pairs) for real with rpm --root, "
                    "build, pack and write two images, and fit the planner's cost model to the "
                    "timings. `ais plan` and `ais rebuild` read the file it writes.")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help=f"calibration file to write [CACHE/{COST_FILE}, where plan and rebuild look]")
    parser.add_argument("--max-sets", type=int, default=24, metavar="N",
                        help="package sets to install for the rpm fit [%(default)s]")
    parser.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from ais.calibrate.fit import prediction_error
    from ais.calibrate.measure import calibrate
    from ais.cost import save_calibration
    from ais.descriptors import load_site

    out = Path(args.out) if args.out else Path(args.cache, COST_FILE)
    site = load_site(args.descriptors, args.repo)
    model, rpm_samples, _ = calibrate(site, Path(args.repo), max_sets=args.max_sets)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_calibration(model, out)
    print(f"fitted on {len(rpm_samples)} transactions; worst relative error on them "
          f"{prediction_error(model, rpm_samples):.0%}")
    print(f"rpm: {model.transaction_s:.3f}s/transaction + {model.rpm_per_package_s * 1e3:.2f}ms/package "
          f"+ {model.rpm_per_byte_s * 2**20 * 1e3:.2f}ms/MiB + {model.rpm_per_file_s * 1e3:.3f}ms/file "
          f"+ {model.rpm_per_scriptlet_s * 1e3:.1f}ms/scriptlet")
    print(f"image: {model.image_fixed_s:.2f}s fixed + {model.stream_bytes_per_s / 2**20:.0f} MiB/s stored; "
          f"stored bytes ~ {model.image_overhead_bytes / 2**20:.1f} MiB + {model.stored_factor:.2f} x installed")
    read_back = 1 / model.finish_per_image_byte_s / 2**20 if model.finish_per_image_byte_s else float("inf")
    print(f"fresh filesystem {model.fresh_fs_s:.2f}s; finish {model.finish_s:.2f}s + "
          f"{model.finish_per_file_s * 1e3:.3f}ms/file + imaged bytes read back at {read_back:.0f} MiB/s; "
          f"host files {model.host_files_s * 1e3:.1f}ms")
    print(f"wrote {out}")
    return 0
