"""Is this host idle? CPU, memory and network from the metrics of a cgroup, or of the whole machine.

What it does: `Load(cgroup)` reads counters: CPU time used (cgroup v1 cpuacct.usage,
v2 cpu.stat usage_usec, or /proc/stat for the whole machine), memory in use
(memory.usage_in_bytes / memory.current, or /proc/meminfo), and bytes through the
network devices of this network namespace (/proc/net/dev, without lo).
`IdleDetector` samples them (`sample()`, about once a second) and says the host is
idle when, over the last `idle_seconds`, CPU stayed under `cpu` CPUs, memory under
`memory` (a fraction of the cgroup's limit or of the machine's RAM) and the network
under `net` bytes/s. A test makes one host busy by giving its agent a cgroup that
runs a busy loop.

A load that cannot be read (the cgroup removed under the agent) counts as busy, and says
so: the host's updates then wait, reported "waiting" with that reason.

Reads: /sys/fs/cgroup, /proc. Fails with `UsageError` when the cgroup does not exist.
Returns floats and booleans.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ais.errors import UsageError

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Thresholds:
    cpu: float = 0.5  # CPUs in use
    memory: float = 0.9  # fraction
    net: float = 10e6  # bytes/s
    idle_seconds: float = 10.0


class Load:
    """Counters of one cgroup: a path under /sys/fs/cgroup's hierarchies, or an absolute directory
    (a cgroup hierarchy mounted elsewhere: `ip netns exec` hides /sys/fs/cgroup); '' the whole machine."""

    def __init__(self, cgroup: str = ""):
        self.directory = Path(cgroup)
        self.cgroup = cgroup.strip("/")
        self._cpu_file, self._mem_file, self._limit_file = self._files()

    def _files(self):
        if not self.cgroup:
            return None, None, None
        if self.directory.is_absolute():  # a cgroup directory given by path (any mount of the hierarchy)
            d = self.directory
            candidates = [(d / "cpuacct.usage", d / "memory.usage_in_bytes", d / "memory.limit_in_bytes"),
                          (d / "cpu.stat", d / "memory.current", d / "memory.max")]
        else:
            candidates = self._named()
        for cpu, mem, limit in candidates:
            if cpu.exists():
                return cpu, (mem if mem.exists() else None), (limit if limit.exists() else None)
        raise UsageError(f"--cgroup {self.directory}: no such cgroup (no {candidates[0][0].name} nor "
                         f"{candidates[1][0].name} in {candidates[0][0].parent} or {candidates[1][0].parent})")

    def _named(self):
        return [  # (cpu, memory, memory limit): v1, v2 at /sys/fs/cgroup, v2 in a hybrid layout
            (CGROUP / "cpuacct" / self.cgroup / "cpuacct.usage", CGROUP / "memory" / self.cgroup / "memory.usage_in_bytes",
             CGROUP / "memory" / self.cgroup / "memory.limit_in_bytes"),
            (CGROUP / self.cgroup / "cpu.stat", CGROUP / self.cgroup / "memory.current", CGROUP / self.cgroup / "memory.max"),
            (CGROUP / "unified" / self.cgroup / "cpu.stat", CGROUP / "unified" / self.cgroup / "memory.current",
             CGROUP / "unified" / self.cgroup / "memory.max"),
        ]

    def cpu_seconds(self) -> float:
        if self._cpu_file is None:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle, not iowait
            return busy / os.sysconf("SC_CLK_TCK")
        text = self._cpu_file.read_text()
        if self._cpu_file.name == "cpuacct.usage":
            return int(text) / 1e9
        usage = next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec"))
        return int(usage) / 1e6

    def memory_fraction(self) -> float:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(info["MemTotal"].split()[0]) * 1024
        if self._mem_file is None:
            return 1 - int(info["MemAvailable"].split()[0]) * 1024 / total
        used = int(self._mem_file.read_text())
        limit_text = self._limit_file.read_text().strip() if self._limit_file else "max"
        limit = total if limit_text == "max" else min(int(limit_text), total)
        return used / limit

    @staticmethod
    def net_bytes() -> int:
        total = 0
        for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
            name, _, rest = line.partition(":")
            if name.strip() != "lo":
                fields = rest.split()
                total += int(fields[0]) + int(fields[8])
        return total


class IdleDetector:
    def __init__(self, load: Load, thresholds: Thresholds, clock=time.monotonic):
        self.load, self.thresholds, self.clock = load, thresholds, clock
        self._last = None
        self.last_busy = clock()  # not idle until it has watched for idle_seconds
        self.why = "just started"

    def sample(self) -> None:
        now = self.clock()
        try:
            counters = (now, self.load.cpu_seconds(), self.load.net_bytes())
            mem = self.load.memory_fraction()
        except (OSError, ValueError, StopIteration) as err:  # the cgroup went away, a file changed its format
            self.last_busy, self.why, self._last = now, f"cannot read the load ({err})", None
            return
        if self._last is not None:
            dt = max(now - self._last[0], 1e-3)
            cpu = (counters[1] - self._last[1]) / dt
            net = (counters[2] - self._last[2]) / dt
            t = self.thresholds
            why = [w for w, over in ((f"CPU {cpu:.2f} CPUs > {t.cpu}", cpu > t.cpu),
                                     (f"memory {mem:.0%} > {t.memory:.0%}", mem > t.memory),
                                     (f"network {net / 1e6:.1f} MB/s > {t.net / 1e6:.1f}", net > t.net)) if over]
            if why:
                self.last_busy, self.why = now, "; ".join(why)
        self._last = counters

    def idle(self) -> bool:
        return self.clock() - self.last_busy >= self.thresholds.idle_seconds
