"""Progress of long work on the command line: bars on a terminal, timestamped lines otherwise, never both.

What it does: `task(description, total=, unit=)` is a context manager whose
handle counts work done (`t.advance(k)`); `line(text)` writes a one-off step
line. `ais rebuild`, `ais image write/get`, `ais client` and the lab's
`make real-site` use it. Everything goes to stderr: stdout stays for results
and --json.

The mode is decided once per process (`mode()`), from the stream written to:
- bars: stderr is a terminal. rich draws a bar per task (description, bar,
  done/total in its unit, rate, elapsed and ETA; a spinner when the total is
  unknown); at its end a task leaves one final line (totals and duration), or
  nothing if it is `transient`. Step lines print above the bars.
- lines: stderr is not a terminal (cron, a log file, a pipe, ais-boot's
  console, where /init asks for lines), or TERM=dumb, or rich cannot be
  imported (the boot environment does not carry it). Plain lines, each
  prefixed with a UTC timestamp (2026-12-02T14:03:11Z): one when a task
  starts, one while it runs at most every `every` seconds (10) AND every 10%
  of its total, whichever is less often (no flood in a cron mail; unknown
  totals: by time only), and a final one with totals and duration. No ANSI
  escapes, no carriage returns. A transient task writes no lines at all.
- off: nothing (neither tasks nor step lines); results and errors still print.
The issue asked for "stdout is not a terminal"; we decide by stderr, the stream
the progress goes to, so `ais rebuild | tee log` still shows bars (stderr is
still the terminal) while `ais rebuild 2>&1 | tee log` and cron get lines.
`AIS_PROGRESS=bars|lines|off` overrides the choice (bars even into a pipe).

Why rich: a maintained library with a thread-safe live display (the image
writer advances from its worker threads), byte, rate and ETA columns, and
terminal handling (cursor, width, redraws) we no longer write by hand.

Reads: the environment (AIS_PROGRESS, TERM) and whether the stream is a
terminal. Fails: `UsageError` (exit 2) for an AIS_PROGRESS that is none of
bars, lines, off. Returns: `Task` handles; writes only to the stream.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Iterator, TextIO

from ais.errors import UsageError
from ais.sizes import human

MODES = ("bars", "lines", "off")
EVERY = 10.0  # seconds: the shortest gap between two lines of one task in lines mode
STEP = 0.10  # and the least part of its total done between them


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_mode(stream: TextIO) -> str:
    """AIS_PROGRESS if set; else bars on a terminal that rich can drive, lines otherwise."""
    asked = os.environ.get("AIS_PROGRESS", "").strip().lower()
    if asked:
        if asked not in MODES:
            raise UsageError(f"AIS_PROGRESS must be one of {', '.join(MODES)}, not {asked!r}")
        return asked if asked != "bars" or _rich_available() else "lines"
    tty = hasattr(stream, "isatty") and stream.isatty()
    dumb = os.environ.get("TERM", "") in ("dumb", "unknown")
    return "bars" if tty and not dumb and _rich_available() else "lines"


def _rich_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("rich") is not None


def amount(n: float, unit: str) -> str:
    return human(n) if unit == "bytes" else f"{n:g}{' ' + unit if unit else ''}"


def done_of(done: float, total: float | None, unit: str) -> str:
    """'412.0M of 1.2G (34%)', '3 of 7 images (43%)', or '120 packages' for an unknown total."""
    if total is None:
        return amount(done, unit)
    pct = f" ({100 * done / total:.0f}%)" if total else ""
    if unit == "bytes":
        return f"{human(done)} of {human(total)}{pct}"
    return f"{done:g} of {amount(total, unit)}{pct}"


def rate_of(done: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or done <= 0:
        return ""
    per = done / seconds
    if unit == "bytes":
        return f", {human(per)}/s"
    return f", {per:.1f} {unit or 'items'}/s" if per < 100 else f", {per:.0f} {unit or 'items'}/s"


class Task:
    """One piece of long work: advance it as work is done (thread-safe)."""

    def __init__(self, out: "Output", description: str, total: float | None, unit: str, transient: bool,
                 every: float):
        self.out, self.description, self.total, self.unit = out, description, total, unit
        self.transient, self.every = transient, every
        self.done = 0.0
        self.started = self.last_time = time.monotonic()
        self.last_done = 0.0
        self.lock = threading.Lock()
        self.bar_id = None  # rich's task id in bars mode

    def advance(self, k: float = 1) -> None:
        with self.lock:
            self.done += k
            due = self._line_due()
        if self.bar_id is not None:
            self.out.bars.advance(self.bar_id, k)
        elif due:
            self.out.line(f"{self.description}: {done_of(self.done, self.total, self.unit)}"
                          f"{rate_of(self.done, time.monotonic() - self.started, self.unit)}")

    def describe(self, description: str) -> None:
        """A new description (e.g. the step now running); shown on the bar, and on the next lines."""
        self.description = description
        if self.bar_id is not None:
            self.out.bars.update(self.bar_id, description=description)

    def _line_due(self) -> bool:
        if self.out.mode != "lines" or self.transient:
            return False
        now = time.monotonic()
        if now - self.last_time < self.every:
            return False
        if self.total and (self.done - self.last_done) < STEP * self.total:
            return False
        self.last_time, self.last_done = now, self.done
        return True

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        return f"{amount(self.done, self.unit)} in {seconds:.1f}s{rate_of(self.done, seconds, self.unit)}"


class Output:
    """Where progress goes: a stream (None: sys.stderr at the time of writing) and its mode."""

    def __init__(self, stream: TextIO | None = None, mode: str | None = None):
        self.stream = stream
        self.mode = mode or choose_mode(stream or sys.stderr)
        if self.mode not in MODES:
            raise UsageError(f"progress mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        self.bars = None  # a rich Progress while any task is open
        self.open = 0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        """One complete line: above the bars on a terminal, timestamped otherwise."""
        if self.mode == "off":
            return
        if self.mode == "bars":
            self._console().print(text, markup=False, highlight=False, soft_wrap=True)
            return
        stream = self.stream or sys.stderr
        stream.write(f"{stamp()} {text}\n")
        stream.flush()

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None, unit: str = "", *, transient: bool = False,
             every: float = EVERY) -> Iterator[Task]:
        t = Task(self, description, total, unit, transient, every)
        if self.mode == "bars":
            self._start_bar(t)
        elif self.mode == "lines" and not transient:
            size = f" ({amount(total, unit)})" if total is not None else ""
            self.line(f"{description}: started{size}")
        try:
            yield t
        except BaseException as err:
            self._end(t, f"{t.description}: FAILED after {time.monotonic() - t.started:.1f}s at "
                         f"{done_of(t.done, t.total, unit)} ({type(err).__name__})")
            raise
        self._end(t, f"{t.description}: done, {t.summary()}")

    def _end(self, t: Task, final: str) -> None:
        if t.bar_id is not None:
            self._stop_bar(t)
        if not t.transient and self.mode != "off":
            self.line(final)

    # ------------------------------------------------------------ bars (rich)

    def _console(self):
        from rich.console import Console

        if self.bars is not None:
            return self.bars.console
        if getattr(self, "_plain_console", None) is None:
            self._plain_console = Console(file=self.stream, stderr=self.stream is None, force_terminal=True)
        return self._plain_console

    def _start_bar(self, t: Task) -> None:
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        with self.lock:
            if self.bars is None:
                count, rate = _unit_columns()
                self.bars = Progress(
                    SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                    count(), rate(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=self._console(), transient=True, redirect_stdout=False, redirect_stderr=False)
                self.bars.start()
            self.open += 1
            t.bar_id = self.bars.add_task(t.description, total=t.total, unit=t.unit)

    def _stop_bar(self, t: Task) -> None:
        with self.lock:
            self.bars.remove_task(t.bar_id)
            t.bar_id = None
            self.open -= 1
            if self.open == 0:
                self.bars.stop()
                self.bars = None


def _unit_columns():
    """rich columns for done/total and the rate in the task's unit: bytes as sizes, others as counts."""
    from rich.progress import DownloadColumn, ProgressColumn, TransferSpeedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        bytes_column = DownloadColumn(binary_units=True)

        def render(self, task) -> Text:
            unit = task.fields.get("unit", "")
            if unit == "bytes":
                return self.bytes_column.render(task)
            total = "?" if task.total is None else f"{task.total:g}"
            return Text(f"{task.completed:g}/{total}{' ' + unit if unit else ''}", style="progress.download")

    class Rate(ProgressColumn):
        bytes_column = TransferSpeedColumn()

        def render(self, task) -> Text:
            unit = task.fields.get("unit", "")
            if unit == "bytes":
                return self.bytes_column.render(task)
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} {unit or 'items'}/s", style="progress.data.speed")

    return Count, Rate


_default: Output | None = None
_default_lock = threading.Lock()


def output() -> Output:
    """The process's progress output on stderr; its mode is decided at the first call."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Output()
        return _default


def mode() -> str:
    return output().mode


def task(description: str, total: float | None = None, unit: str = "", *, transient: bool = False,
         every: float = EVERY):
    """`with task("image 3/7 abc123", total=n, unit="bytes") as t: t.advance(k)`; see the module docstring."""
    return output().task(description, total, unit, transient=transient, every=every)


def line(text: str) -> None:
    output().line(text)
