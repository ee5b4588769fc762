"""`ais client ...` loads only the client's modules: a booting machine starts it many times.

Regression: ais/cli.py imported every subsystem for every command, so each
`ais client <step>` loaded numpy, PuLP, highspy, networkx and lxml.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "pulp", "highspy", "networkx", "lxml", "ais.planner", "ais.cache", "ais.server",
         "ais.descriptors")

PROBE = """
import contextlib, io, json, sys
from ais.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main({argv!r})
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(argv: list[str]) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["client", "--help"], ["client", "check", "--help"], ["image", "verify", "--help"]])
def test_client_and_image_commands_load_nothing_heavy(argv):
    loaded = modules_loaded_by(argv)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


def test_help_still_lists_every_command():
    from ais.cli import COMMANDS

    from aislab.net import ais_command

    out = subprocess.run(ais_command("--help"), capture_output=True, text=True).stdout
    assert all(name in out for name in COMMANDS)
