"""The state a reinstall carries from step to step, and per-phase timing and progress.

What it does: `Session` holds what the steps share (server URL, host, token,
target, mount point, transport, the plan, timings per phase, the outcome) and
persists it as `<state dir>/session.json` after every change, so `ais-boot`
can run each step as its own `ais client <step> --state DIR` process.
`Session.phase(name)` times a step, records its duration (monotonic clock) and
its span by the wall clock (`spans`, what `ais history` draws), and prints
progress through ais.progress: a spinner per phase (k of n) on a terminal,
timestamped lines at its start and end otherwise (ais-boot's console: /init
sets AIS_PROGRESS=lines). `since_boot()` adds the span "bootenv": from this machine's kernel
start (/proc/uptime) to now, the boot environment's own share of a reinstall.
As a phase starts, `notify` (when the session has one, never in a dry run; not
saved) is told its name: it posts it to the server's live board
(ais.client.notify), best effort: an error there is swallowed.

Reads/writes: the state directory (created if needed; the token is stored
mode 0600). Fails with `ClientError` when a step needs a session that was not
created (`ais client plan` comes first) or the session file is unreadable.
Returns `Session` objects.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

from ais import progress
from ais.contracts import CLIENT_PHASES
from ais.errors import ClientError
from ais.files import write_atomic

FILE = "session.json"
PHASES = CLIENT_PHASES  # the steps in the order they run (shared with the server's live board)


@dataclass
class Session:
    state_dir: str
    server: str
    host: str | None = None  # name or MAC given; plan.host is the name the server resolved
    token: str | None = None
    site_ca: str | None = None  # the site CA file an https:// server is checked by (--site-ca)
    target: str | None = None
    root: str | None = None  # mount point of the target
    transport: str | None = None  # asked for (--transport, ais.transport=); None: the plan's
    interface: str | None = None  # local address on the provisioning network; None: the one routing to the server
    seed_seconds: float = 60.0  # BitTorrent: the longest this client seeds on after its image is written
    plan: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    spans: list[list] = field(default_factory=list)  # [name, start, end] by the wall clock, in order
    phase_now: str | None = None
    mounted: bool = False
    started_at: float = field(default_factory=time.time)
    dry_run: bool = False
    results: dict = field(default_factory=dict)  # what steps found: allowed rpm -Va lines, the record, ...
    # told each phase as it starts, best effort (ais.client.notify; set by steps.api_of); not saved
    notify: ClassVar[Callable[..., None] | None] = None

    # ------------------------------------------------------------ persistence

    def save(self) -> None:
        path = Path(self.state_dir, FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(asdict(self), indent=1, sort_keys=True).encode(), 0o600)

    @classmethod
    def load(cls, state_dir: str | os.PathLike) -> "Session":
        path = Path(state_dir, FILE)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise ClientError(f"no session in {state_dir}: run `ais client plan --state {state_dir}` first") from err
        except (OSError, ValueError, RecursionError) as err:
            raise ClientError(f"cannot read the session {path}: {err}") from err
        try:
            session = cls(**data)
        except TypeError as err:
            raise ClientError(f"the session {path} is not one this client wrote: {err}") from err
        return session  # its plan was checked against ais.contracts.HostPlan when it arrived

    def need_plan(self) -> dict:
        if self.plan is None:
            raise ClientError("the session has no plan yet: run `ais client plan` first")
        return self.plan

    # ------------------------------------------------------------ phases

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        """Time one step; record its duration (saved) and show progress."""
        self.phase_now = name
        started, wall = time.monotonic(), time.time()
        if self.notify is not None and not self.dry_run:
            with contextlib.suppress(Exception):  # a progress post never fails or holds up a step
                self.notify(name)
        show(f"{name}{': ' + detail if detail else ''} ...", final=False)
        yield
        seconds = time.monotonic() - started
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)
        self.spans.append([name, round(wall, 3), round(wall + seconds, 3)])
        self.phase_now = None
        show(f"{name}{': ' + detail if detail else ''} done in {seconds:.2f}s")
        self.save()


    def since_boot(self, uptime_file: str = "/proc/uptime") -> None:
        """Record the span bootenv: kernel start (now minus uptime) to now."""
        try:
            uptime = float(Path(uptime_file).read_text().split()[0])
        except (OSError, ValueError, IndexError) as err:
            raise ClientError(f"cannot read the uptime from {uptime_file}: {err}") from err
        now = time.time()
        self.spans.append(["bootenv", round(now - uptime, 3), round(now, 3)])
        self.save()


def show(text: str, *, final: bool = True) -> None:
    """Progress of a phase (ais.progress): at its start (final=False) its place among
    PHASES, "(phase 4 of 14)", as a spinner on a terminal or a timestamped line
    otherwise; at its end (final) one line. A phase's start hides the spinner before."""
    _end_status()
    out = progress.output()
    if final:
        out.line(f"[ais] {text}")
        return
    text = f"[ais] {text}{place_of(text)}"
    if out.mode == "bars":
        global _status
        _status = out.task(text, transient=True)
        _status.__enter__()
    else:
        out.line(text)


def place_of(text: str) -> str:
    """' (phase 4 of 14)' for a text that starts with a phase's name, else ''."""
    name = text.split(" ", 1)[0].rstrip(":")
    return f" (phase {PHASES.index(name) + 1} of {len(PHASES)})" if name in PHASES else ""


_status = None  # the running phase's spinner (bars mode)


@atexit.register  # after a phase that raised: the spinner ends, the terminal gets its cursor back
def _end_status() -> None:
    global _status
    if _status is not None:
        status, _status = _status, None
        status.__exit__(None, None, None)


def say(text: str) -> None:
    progress.line(f"[ais] {text}")
