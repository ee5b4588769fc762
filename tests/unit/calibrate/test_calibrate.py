"""ais calibrate: the fit recovers known coefficients; a real run gives a usable model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.cli import main
from ais.calibrate.fit import fit_image, fit_rpm, prediction_error
from ais.calibrate.measure import ImageSample, RpmSample
from ais.cost import CostModel, load_calibration

DEMO = Path(__file__).resolve().parents[3] / "descriptors"


def test_fit_rpm_recovers_coefficients():
    truth = dict(tx=0.2, pkg=0.01, byte=1 / 50e6, file=0.0004, script=0.05)
    shapes = [(7, 13e6, 510, 2), (10, 17e6, 1051, 4), (12, 30e6, 1565, 3), (19, 36e6, 1775, 8),
              (9, 14e6, 517, 5), (13, 18e6, 991, 1), (30, 60e6, 3000, 9), (5, 2e6, 40, 0)]
    samples = [RpmSample(n, b, f, s, truth["tx"] + truth["pkg"] * n + truth["byte"] * b
                         + truth["file"] * f + truth["script"] * s) for n, b, f, s in shapes]
    model = fit_rpm(samples, CostModel())
    assert model.transaction_s == pytest.approx(truth["tx"], rel=1e-6)
    assert model.rpm_per_file_s == pytest.approx(truth["file"], rel=1e-6)
    assert model.rpm_per_scriptlet_s == pytest.approx(truth["script"], rel=1e-6)
    assert prediction_error(model, samples) < 1e-6


def test_fit_image_through_two_points():
    # write: 0.1 s + 300 MiB/s; warm finish: 0.2 s + 1 ms per file, plus 1 s per GiB
    # read back after imaging; grow 0.3/0.5 s; mkfs 0.4/0.6 s
    samples = [ImageSample(10 * 2**20, 9 * 2**20, 500, 0.1 + 9 / 300, 0.3, 0.2 + 0.5 + 10 / 1024, 0.4, 0.2 + 0.5),
               ImageSample(40 * 2**20, 30 * 2**20, 2000, 0.1 + 30 / 300, 0.5, 0.2 + 2.0 + 40 / 1024, 0.6, 0.2 + 2.0)]
    model = fit_image(samples, CostModel())
    assert model.stream_bytes_per_s == pytest.approx(300 * 2**20, rel=1e-6)
    assert model.stored_factor == pytest.approx(0.7, rel=1e-6)
    assert model.image_fixed_s == pytest.approx(0.1 + 0.4, rel=1e-6)
    assert model.finish_per_file_s == pytest.approx(0.001, rel=1e-6)
    assert model.finish_s == pytest.approx(0.2, rel=1e-6)
    assert model.fresh_fs_s == pytest.approx(0.5, rel=1e-6)
    assert model.finish_per_image_byte_s == pytest.approx(1 / 2**30, rel=1e-6)


def test_calibrate_for_real_writes_a_loadable_model(repo_dir, tmp_path, capsys):
    out = tmp_path / "calibration.json"
    code = main(["calibrate", "--descriptors", str(DEMO), "--repo", str(repo_dir),
                 "--out", str(out), "--max-sets", "6"])
    assert code == 0, capsys.readouterr().err
    model = load_calibration(out)
    assert model.stream_bytes_per_s > 1e6  # measured, not the default
    assert model != CostModel()
    base_pkg = CostModel().rpm_seconds(2**20, 50, 0)
    assert 0 < model.rpm_seconds(2**20, 50, 0) < 100 * base_pkg
