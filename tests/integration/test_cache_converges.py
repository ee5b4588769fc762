"""One `ais rebuild` converges: right after it, a dry run has nothing to build or remove.

The first plan estimates the sizes of images never built; the rebuild plans again
with the sizes it measured, so cron does not rebuild something on every run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ais.cost import CostModel, save_calibration
from aislab.net import ais_command

ROOT = Path(__file__).resolve().parents[2]


def ais(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ais_command(), *args], cwd=ROOT, capture_output=True, text=True)


def test_second_rebuild_has_nothing_to_do(repo_dir, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    # images pay off, and estimates are deliberately off (stored_factor far too high)
    save_calibration(CostModel(image_fixed_s=0.05, stream_bytes_per_s=400e6, stored_factor=1.5,
                               image_overhead_bytes=0, fresh_fs_s=0.02), cache / "cost.json")
    common = ["--repo", str(repo_dir), "--cache", str(cache), "--budget", "64M"]
    first = ais("rebuild", "--json", *common)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["build"], "the first rebuild builds images"
    again = ais("rebuild", "--dry-run", "--json", *common)
    assert again.returncode == 0, again.stderr
    changes = json.loads(again.stdout)
    assert changes["build"] == [] and changes["remove"] == [], changes
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sum(r["stored_bytes"] for r in manifest["images"].values()) <= 64 * 2**20
    assert manifest["cost"]["stored_factor"] == 1.5  # the model the plan used is recorded
