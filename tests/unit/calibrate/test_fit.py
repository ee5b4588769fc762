"""ais.calibrate.fit.fit_rpm: a model in which packages cost nothing is never the answer."""

import pytest

from ais.calibrate.fit import fit_rpm
from ais.calibrate.measure import RpmSample
from ais.cost import CostModel

# (case, samples as (packages, installed bytes, files, scriptlets, seconds))
NOISY = {
    # On a busy machine the larger sets happened to run no slower: the best fit with a fixed
    # cost puts everything into the fixed cost, and packages would cost nothing.
    "flat timings": [(5, 10e6, 500, 2, 1.00), (12, 30e6, 1500, 5, 0.98), (20, 60e6, 3000, 9, 1.01),
                     (8, 15e6, 700, 3, 0.99), (15, 40e6, 2000, 6, 1.00), (25, 80e6, 4000, 12, 1.02)],
    "bigger sets faster": [(5, 10e6, 500, 2, 1.2), (12, 30e6, 1500, 5, 1.1), (20, 60e6, 3000, 9, 1.0),
                           (8, 15e6, 700, 3, 1.2), (15, 40e6, 2000, 6, 1.1), (25, 80e6, 4000, 12, 1.0)],
}


@pytest.mark.parametrize("case", list(NOISY))
def test_packages_never_cost_nothing(case):
    model = fit_rpm([RpmSample(*s) for s in NOISY[case]], CostModel())
    assert model.rpm_seconds(1 << 20, 50, 0) > 0
    # all in all, it still explains most of the time the measured sets took (no model of what rpm
    # does can fit timings that shrink as sets grow)
    predicted = sum(model.transaction_s + packages * model.rpm_seconds(size / packages, files / packages,
                                                                        scripts / packages)
                    for packages, size, files, scripts, _ in NOISY[case])
    measured = sum(sample[-1] for sample in NOISY[case])
    assert 0.5 * measured < predicted < 2 * measured


def test_clean_timings_keep_their_fixed_cost():
    truth = CostModel(transaction_s=0.5, rpm_per_package_s=0.01, rpm_per_byte_s=5e-9, rpm_per_file_s=1e-4,
                      rpm_per_scriptlet_s=0.02)
    sets = [(5, 10e6, 500, 2), (12, 30e6, 1500, 5), (20, 60e6, 3000, 9), (8, 15e6, 900, 3), (15, 40e6, 2600, 6),
            (25, 70e6, 4000, 12)]
    samples = [RpmSample(p, b, f, s, truth.transaction_s + p * truth.rpm_per_package_s + b * truth.rpm_per_byte_s
                         + f * truth.rpm_per_file_s + s * truth.rpm_per_scriptlet_s) for p, b, f, s in sets]
    model = fit_rpm(samples, CostModel())
    assert model.transaction_s == pytest.approx(0.5, rel=1e-3)
    assert model.rpm_seconds(1 << 20, 50, 1) == pytest.approx(truth.rpm_seconds(1 << 20, 50, 1), rel=1e-3)
