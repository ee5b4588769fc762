"""Step lines for `ais rebuild`: one line per step with its duration.

On a terminal, long steps also show a progress line that is overwritten in
place; under cron (stderr not a terminal) only plain, complete lines are
written, each prefixed with a UTC timestamp so a mailed cron log reads well.

Reads: nothing. Fails: never (a step that raises is reported as failed and the
exception propagates). Returns None; writes to the given stream (stderr).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TextIO


class Reporter:
    """Writes `step ... ok (1.23s)` lines, and progress on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.quiet = quiet
        self.durations: dict[str, float] = {}

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n")
        else:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()

    def progress(self, text: str) -> None:
        """A transient line on a terminal; nothing under cron."""
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[dict]:
        """Time a step; the block may put a result summary into the yielded dict."""
        started = time.monotonic()
        info: dict = {}
        self.progress(f"rebuild: {name} {detail}...")
        try:
            yield info
        except BaseException as err:
            self.line(f"rebuild: {name} FAILED after {time.monotonic() - started:.2f}s: "
                      f"{type(err).__name__}")
            raise
        seconds = time.monotonic() - started
        self.durations[name] = self.durations.get(name, 0.0) + seconds
        summary = info.get("summary", detail)
        self.line(f"rebuild: {name} ok ({seconds:.2f}s){' ' + summary if summary else ''}")
