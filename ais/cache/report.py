"""Step lines for `ais rebuild`: one line per step with its duration, through ais.progress.

Each step ends in one line, `rebuild: plan ok (0.12s) 7 images, budget 4.0G`
(or `rebuild: build FAILED after 3.10s: BuildError`). While a step runs, a
terminal shows a spinner for it (transient: gone when the line is written);
`images(total)` adds a bar of the images built so far. Under cron (stderr not
a terminal) only the complete lines are written, each prefixed with a UTC
timestamp, so a mailed cron log reads well. The modes and AIS_PROGRESS are
ais.progress's (docs/cache.md, "Progress").

Reads: nothing. Fails: never (a step that raises is reported as failed and the
exception propagates). Returns None; writes to the given stream (default:
stderr, in the process's progress mode).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TextIO

from ais import progress


class Reporter:
    """Writes `step ... ok (1.23s)` lines, and progress on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False):
        if quiet:
            self.out = progress.Output(stream, mode="off")
        else:
            self.out = progress.Output(stream) if stream is not None else progress.output()
        self.quiet = quiet
        self.durations: dict[str, float] = {}
        self.running: progress.Task | None = None  # the spinner of the step running now

    def line(self, text: str) -> None:
        self.out.line(text)

    def doing(self, what: str) -> None:
        """Say on the running step's spinner what it does now (e.g. an image's build step)."""
        if self.running is not None:
            self.running.describe(f"{self.running_name}: {what}")

    @contextlib.contextmanager
    def images(self, total: int) -> Iterator[progress.Task]:
        """A bar of the images built (k of total) on a terminal; the step lines say it elsewhere."""
        with self.out.task("rebuild: images", total, "images", transient=True) as t:
            yield t

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[dict]:
        """Time a step; the block may put a result summary into the yielded dict."""
        started = time.monotonic()
        info: dict = {}
        self.running_name = f"rebuild: {name} {detail}".rstrip()
        try:
            with self.out.task(self.running_name, transient=True) as self.running:
                yield info
        except BaseException as err:
            self.line(f"rebuild: {name} FAILED after {time.monotonic() - started:.2f}s: "
                      f"{type(err).__name__}")
            raise
        finally:
            self.running = None
        seconds = time.monotonic() - started
        self.durations[name] = self.durations.get(name, 0.0) + seconds
        summary = info.get("summary", detail)
        self.line(f"rebuild: {name} ok ({seconds:.2f}s){' ' + summary if summary else ''}")
