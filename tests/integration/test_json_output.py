"""Every `--json` command, run as the real `ais` process: its stdout parses as JSON.

Regression: highspy 1.16 prints "Running HiGHS ... Copyright ..." on file
descriptor 1 when a solver object is created, so `ais plan --json`, `ais rebuild
--json` and `ais cache status --json` printed text that was not JSON. The unit
test read stdout through capsys, which does not see fd-level output. The
second run adds a sitecustomize whose C-level write(1, ...) fires whenever a
subsystem's module (ais.<subsystem>.<module>) or highspy is imported, as the
HiGHS banner does when a solver is made, so the guarantee does not depend on which
solver version happens to be installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ais.cost import CostModel, save_calibration
from aislab.net import ais_command

ROOT = Path(__file__).resolve().parents[2]

# A sitecustomize that makes C code write to fd 1 whenever a module is imported,
# as HiGHS does: whatever the solver version, fd-level noise must not reach stdout.
NOISY_SITE = '''
import ctypes, builtins
_libc = ctypes.CDLL(None)
_real_import = builtins.__import__
def _noisy_import(name, *args, **kwargs):
    if (name.startswith("ais.") and name.count(".") >= 2) or name == "highspy":
        _libc.write(1, b"C LIBRARY BANNER ON FD 1\\n", 25)
    return _real_import(name, *args, **kwargs)
builtins.__import__ = _noisy_import
'''


@pytest.fixture(scope="module")
def site(repo_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("json")
    cache = work / "cache"
    cache.mkdir()
    save_calibration(CostModel(image_fixed_s=0.05, stream_bytes_per_s=400e6, fresh_fs_s=0.02), cache / "cost.json")
    noisy = work / "noisy"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text(NOISY_SITE)
    return {"common": ["--repo", str(repo_dir), "--cache", str(cache)], "noisy": noisy}


def ais(site, *args: str, noisy: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site["noisy"])} if noisy else None
    return subprocess.run(ais_command(*args), cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


JSON_COMMANDS = [
    ("validate", "--json"),
    ("show", "web-1", "--json"),
    ("plan", "--budget", "48M", "--json"),
    ("rebuild", "--budget", "48M", "--json"),
    ("cache", "status", "--budget", "48M", "--json"),
]


@pytest.mark.parametrize("noisy", [False, True], ids=["as-installed", "fd1-writing-library"])
def test_json_commands_print_only_json(site, noisy):
    for argv in JSON_COMMANDS:
        proc = ais(site, *argv, *site["common"], noisy=noisy)
        assert proc.returncode == 0, (argv, proc.stderr)
        json.loads(proc.stdout)  # the whole of stdout is one JSON document
        if noisy:
            assert "C LIBRARY BANNER" in proc.stderr, argv  # the noise went somewhere visible

