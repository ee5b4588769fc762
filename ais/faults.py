"""Pause points: stop the process at a named step so a test can kill it there.

A neutral module every phase may import (the cache's build steps and the
client's disk and rpm steps use it), so no phase reaches into another for it.

Reads the environment: `AIS_TEST_PAUSE_AT` (a step name, e.g. `rpm`, `mkfs`,
`pack`, `publish`) and `AIS_TEST_PAUSE_FILE` (a path to touch; default
`/tmp/ais-paused-<step>`), `AIS_TEST_PAUSE_SECONDS` (default 3600). When the
step matches, `pause_point` writes its pid to the file and waits until the file
is removed (or that many seconds pass), after saying so on stderr (a test that
cannot see the file, e.g. on a VM's console, waits for that line): a test kills the process meanwhile, or
does what it must while the process stands still and then removes the file to let
it go on. No test waits for a time window. Never fails; returns None.
Outside tests the variables are unset and this costs one dict lookup.

Steps: `image-first-chunk` (the writer, after the first chunk it receives), `client-rpm` (the client, before its rpm transaction). Steps used by the cache, in order: `locked` (lock held, nothing changed yet),
`rpm` (staging root created, the one rpm transaction about to
run), `mkfs` (root installed and checked, before mke2fs), `pack` (filesystem
image checked, before packing), `install` (packed file complete in tmp/,
before its rename into images/), `publish` (new manifest written and fsynced
in tmp/, before the rename that publishes it), `gc` (published, before old
images are removed).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ENV_STEP = "AIS_TEST_PAUSE_AT"
ENV_FILE = "AIS_TEST_PAUSE_FILE"
ENV_SECONDS = "AIS_TEST_PAUSE_SECONDS"


def pause_point(step: str) -> None:
    """Touch the pause file and wait until it is removed, if AIS_TEST_PAUSE_AT names this step."""
    if os.environ.get(ENV_STEP) != step:
        return
    marker = Path(os.environ.get(ENV_FILE) or f"/tmp/ais-paused-{step}")
    marker.write_text(f"{os.getpid()}\n")
    print(f"pause point {step}: pid {os.getpid()} waits until {marker} is removed", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(os.environ.get(ENV_SECONDS) or 3600)
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
