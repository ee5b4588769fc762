import itertools
import json

import numpy as np
import pytest

from ais.errors import BadInput
from ais.calibrate.fit import fit, nonnegative_least_squares
from ais.cost import CostModel, load_calibration, save_calibration


def synthetic_samples(coef, n=200, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0, 50e6, n)
    files = rng.integers(1, 2000, n)
    scripts = rng.integers(0, 3, n)
    seconds = coef[0] + coef[1] * sizes + coef[2] * files + coef[3] * scripts
    seconds = seconds + rng.normal(0, noise, n)
    return list(zip(sizes, files, scripts, seconds))


def test_fit_recovers_exact_coefficients():
    model = fit(synthetic_samples((0.04, 2e-8, 0.0003, 0.4)))
    assert model.rpm_per_package_s == pytest.approx(0.04, rel=1e-6)
    assert model.rpm_per_byte_s == pytest.approx(2e-8, rel=1e-6)
    assert model.rpm_per_file_s == pytest.approx(0.0003, rel=1e-6)
    assert model.rpm_per_scriptlet_s == pytest.approx(0.4, rel=1e-6)


def test_fit_with_noise_is_close():
    model = fit(synthetic_samples((0.04, 2e-8, 0.0003, 0.4), n=2000, noise=0.01, seed=3))
    assert model.rpm_per_byte_s == pytest.approx(2e-8, rel=0.02)
    assert model.rpm_per_scriptlet_s == pytest.approx(0.4, rel=0.02)


def test_fit_never_returns_a_negative_coefficient():
    # seconds fall with file count in this data: the best non-negative answer is 0 per file
    samples = [(0, 0, 0, 1.0), (0, 10, 0, 0.5), (0, 20, 0, 0.2), (1e6, 0, 0, 2.0), (0, 0, 1, 3.0)]
    model = fit(samples)
    assert model.rpm_per_file_s == 0.0
    assert min(model.rpm_per_package_s, model.rpm_per_byte_s, model.rpm_per_scriptlet_s) >= 0


def test_fit_keeps_the_other_fields_of_the_base_model():
    base = CostModel(stream_bytes_per_s=123.0)
    assert fit(synthetic_samples((1, 0, 0, 0)), base).stream_bytes_per_s == 123.0


def test_fit_needs_samples():
    with pytest.raises(BadInput):
        fit([(1, 2, 3, 4.0)])


def test_calibration_round_trip(tmp_path):
    model = CostModel(rpm_per_file_s=0.001, stream_bytes_per_s=5e7)
    save_calibration(model, tmp_path / "cal.json")
    assert load_calibration(tmp_path / "cal.json") == model


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"format": 9}), json.dumps({"format": 1, "bogus": 1}),
     json.dumps({"format": 1, "rpm_per_file_s": -1})],
)
def test_bad_calibration_is_bad_input(tmp_path, content):
    (tmp_path / "cal.json").write_text(content)
    with pytest.raises(BadInput):
        load_calibration(tmp_path / "cal.json")


def test_missing_calibration_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read"):
        load_calibration(tmp_path / "nope.json")


def test_default_costs_make_images_worth_it():
    cost = CostModel()
    installed = 100e6
    rpm = 100 * cost.rpm_seconds(installed / 100, 50, 0)
    assert rpm > cost.image_seconds(cost.estimate_stored_bytes(installed))


def _exact_nnls_residual(design: np.ndarray, target: np.ndarray) -> float:
    """The true optimum by trying every active set (small problems only)."""
    best = float(np.linalg.norm(target))
    n = design.shape[1]
    for r in range(1, n + 1):
        for cols in itertools.combinations(range(n), r):
            x, *_ = np.linalg.lstsq(design[:, cols], target, rcond=None)
            if (x >= 0).all():
                best = min(best, float(np.linalg.norm(design[:, cols] @ x - target)))
    return best


@pytest.mark.parametrize("seed", [18, *range(0, 40, 7)])
def test_nonnegative_least_squares_is_optimal(seed):
    """Regression: the old fit dropped the most negative term and never let it back in,
    which is not Lawson–Hanson: on these seeds it stopped above the optimum."""
    rng = np.random.default_rng(seed)
    design, target = rng.normal(size=(8, 4)), rng.normal(size=8)
    coef = nonnegative_least_squares(design, target)
    assert (coef >= 0).all()
    assert np.linalg.norm(design @ coef - target) <= _exact_nnls_residual(design, target) * (1 + 1e-9) + 1e-12
