"""`pip install .` gives the product without its lab: a wheel built from the checkout holds
ais/ (with its schemas and ais-boot) and nothing of aislab/, tests/ or bench/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_product_only(tmp_path):
    source = tmp_path / "src"  # a copy of what git tracks: setuptools builds in-tree (build/)
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("ais-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ais"}, top
    assert "ais/client/ais-boot" in names and "ais/descriptors/schemas/scd.rng" in names
    assert not [n for n in names if "lab" in Path(n).stem]
