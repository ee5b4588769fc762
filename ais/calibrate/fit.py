"""Fit the cost model to measured installs: non-negative least squares.

What it does: `fit_rpm` turns whole-transaction timings into the transaction
and per-package coefficients, `fit_image` turns two imaging samples into the
image, fresh-filesystem and finish terms, `fit` (per-package samples) and
`prediction_error` (how well the fit explains its own samples). Coefficients
are non-negative (`nonnegative_least_squares`, scipy's Lawson-Hanson NNLS): a
negative cost per file would be nonsense.
What it reads: samples (plain numbers or `RpmSample`/`ImageSample`).
What it fails on: `BadInput` when there are too few samples to fit anything.
What it returns: `CostModel` instances.
"""

from __future__ import annotations

import numpy as np
from msgspec.structs import replace

from ais.cost import CostModel
from ais.errors import BadInput


def fit_rpm(samples: list, base: CostModel) -> CostModel:
    """transaction_s + per-package coefficients from whole-transaction timings.

    When noise makes the larger sets no slower (a busy machine), the best fit puts every second
    into the fixed cost and says packages cost nothing, which rpm contradicts (it writes every
    file): the fit is then made without the fixed cost, so the time is shared out over what the
    transactions installed."""
    design = np.array([[1, s.packages, s.installed_bytes, s.files, s.scriptlets] for s in samples], float)
    target = np.array([s.seconds for s in samples])
    coef = nonnegative_least_squares(design, target)
    if not coef[1:].any():
        coef = np.concatenate(([0.0], nonnegative_least_squares(design[:, 1:], target)))
    return replace(base, transaction_s=float(coef[0]), rpm_per_package_s=float(coef[1]),
                   rpm_per_byte_s=float(coef[2]), rpm_per_file_s=float(coef[3]),
                   rpm_per_scriptlet_s=float(coef[4]))


def fit_image(samples: list, base: CostModel) -> CostModel:
    """Through the two points: write seconds vs stored bytes, stored vs installed
    bytes, warm finish seconds vs files; the extra finish after imaging per
    installed byte, grow and fresh filesystem are averages."""
    small, large = min(samples, key=lambda s: s.stored_bytes), max(samples, key=lambda s: s.stored_bytes)
    grow = sum(s.grow_seconds for s in samples) / len(samples)
    read_back = sum(max(0.0, s.finish_seconds - s.warm_finish_seconds) / max(s.installed_bytes, 1)
                    for s in samples) / len(samples)
    model = replace(base, fresh_fs_s=sum(s.fresh_fs_seconds for s in samples) / len(samples),
                    finish_per_image_byte_s=read_back)
    if large.stored_bytes == small.stored_bytes or large.installed_bytes == small.installed_bytes \
            or large.files == small.files:
        return replace(model, stream_bytes_per_s=large.stored_bytes / max(large.seconds, 1e-6),
                       image_fixed_s=grow, finish_s=large.warm_finish_seconds, finish_per_file_s=0.0)
    rate = max((large.stored_bytes - small.stored_bytes) / max(large.seconds - small.seconds, 1e-6), 1.0)
    factor = (large.stored_bytes - small.stored_bytes) / (large.installed_bytes - small.installed_bytes)
    per_file = max(0.0, (large.warm_finish_seconds - small.warm_finish_seconds) / (large.files - small.files))
    return replace(
        model,
        stream_bytes_per_s=rate,
        stored_factor=max(factor, 0.01),
        image_overhead_bytes=max(0, int(small.stored_bytes - factor * small.installed_bytes)),
        image_fixed_s=max(0.0, small.seconds - small.stored_bytes / rate) + grow,
        finish_per_file_s=per_file,
        finish_s=max(0.0, small.warm_finish_seconds - per_file * small.files),
    )


def prediction_error(model: CostModel, samples: list) -> float:
    """Largest relative error of the fitted model on its own samples (reported, not hidden)."""
    worst = 0.0
    for s in samples:
        predicted = (model.transaction_s + model.rpm_per_package_s * s.packages
                     + model.rpm_per_byte_s * s.installed_bytes + model.rpm_per_file_s * s.files
                     + model.rpm_per_scriptlet_s * s.scriptlets)
        worst = max(worst, abs(predicted - s.seconds) / max(s.seconds, 1e-6))
    return worst


def fit(samples, base: CostModel | None = None) -> CostModel:
    """Fit RPM coefficients to measured installs by non-negative least squares.

    samples: iterable of (installed_size, file_count, scriptlets, seconds), one
    per measured package install. Returns `base` (default CostModel()) with the
    four rpm_* coefficients replaced. Coefficients are non-negative (NNLS).

    >>> fit([(0, 0, 0, 1.0), (1e6, 0, 0, 2.0), (0, 10, 0, 1.5), (0, 0, 1, 3.0)]).rpm_per_file_s
    0.05
    """
    rows = np.asarray(list(samples), dtype=float)
    if rows.ndim != 2 or rows.shape[0] < 4 or rows.shape[1] != 4:
        raise BadInput("fit needs at least 4 samples of (installed_size, file_count, scriptlets, seconds)")
    design = np.column_stack([np.ones(len(rows)), rows[:, 0], rows[:, 1], rows[:, 2]])
    coef = nonnegative_least_squares(design, rows[:, 3])
    base = base or CostModel()
    return replace(
        base,
        rpm_per_package_s=round(float(coef[0]), 12),
        rpm_per_byte_s=round(float(coef[1]), 18),
        rpm_per_file_s=round(float(coef[2]), 12),
        rpm_per_scriptlet_s=round(float(coef[3]), 12),
    )


def nonnegative_least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """argmin ||design·x − target|| subject to x ≥ 0 (Lawson–Hanson, scipy.optimize.nnls).

    Columns have wildly different scales (bytes vs counts): they are scaled to
    unit maximum first, so the solver's tolerances are about information, not units.
    """
    from scipy.optimize import nnls

    scale = np.maximum(np.abs(design).max(axis=0), 1e-300)
    coef, _ = nnls(design / scale, np.asarray(target, dtype=float))
    return coef / scale
