"""A test and benchmark lab for the streamer: ext4 images and network namespaces.

What it does: `make_tree` writes a deterministic directory tree (random and
text files, some empty, a sparse one); `make_fs_image` builds an ext4 image of
a tree with `mke2fs -d`; `NetLab` creates N namespaces joined by a bridge in
its own namespace (veth pairs, 198.51.100.0/24, MTU 9000, a multicast route),
and deletes them all on exit, whatever happened. `NetLab(n, rate="100mbit")`
(or `shape(i, rate)`) shapes each host's link in both directions with a tc
token bucket (`tbf`): on the host's eth0 (what it sends) and on its port in the
bridge (what it receives). The queue behind the bucket is bounded (`latency`),
so a burst the link cannot take is dropped, as on a real switch port: this
kernel has tbf but not netem, so loss comes from the bounded queue, not from
a configured probability. Long-running peers (servers)
are started with `NetLab.spawn` (`ais.run.start`) and killed by pid in `close()`.

What it reads: nothing but its arguments. What it fails on: `ToolError` from
`ip`/`mke2fs`. What it returns: paths, and host addresses.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ais.errors import ToolError
from ais.run import run, start

SUBNET = "198.51.100"
RATE_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def rate_bits(rate: str) -> float:
    """tc rate text ("100mbit", "1gbit") -> bits per second."""
    for unit, factor in RATE_UNITS.items():
        if rate.endswith(unit) and rate[: -len(unit)].isdigit():
            return int(rate[: -len(unit)]) * factor
    raise ValueError(f"rate {rate!r} is not <digits>kbit|mbit|gbit")


def ais_command(*args: str) -> list[str]:
    """argv of the installed `ais` entry point (beside this interpreter, else on PATH)."""
    exe = shutil.which("ais", path=os.path.dirname(sys.executable)) or shutil.which("ais")
    if exe is None:
        raise ToolError(["ais"], 127, "", why="the ais entry point is not installed (make setup)")
    return [exe, *args]


def make_tree(root: Path, *, seed: int = 1, random_kib: int = 4096, text_files: int = 200) -> Path:
    """A tree with incompressible and compressible files; returns root."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    (root / "bin").mkdir(exist_ok=True)
    left = random_kib
    n = 0
    while left > 0:
        size = min(left, rng.randint(1, 700))
        (root / "bin" / f"blob{n}").write_bytes(rng.randbytes(size * 1024))
        left -= size
        n += 1
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "rpm", "disk", "block"]) for _ in range(500)]
    for i in range(text_files):
        d = root / "etc" / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.conf").write_text(" ".join(rng.choices(words, k=rng.randint(10, 3000))) + "\n")
    with open(root / "sparse", "wb") as f:  # a hole in the middle of a file
        f.write(b"head")
        f.seek(3 << 20)
        f.write(b"tail")
    return root


def make_fs_image(src: Path, image: Path, size_mib: int, label: str = "aistest") -> Path:
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(src), "-L", label, str(image), f"{size_mib}M"])
    return image


class NetLab:
    """N hosts (namespaces) on one bridge; use as a context manager."""

    def __init__(self, hosts: int, tag: str | None = None, *, rate: str | None = None, mtu: int = 9000):
        self.rate = rate  # every host's link shaped to this (tc rate text), or None
        self.mtu = mtu  # of every link and the bridge (1500 where virtual machines join through taps)
        self.tag = tag or f"ais{os.getpid() % 100000}"
        self.bridge_ns = f"{self.tag}br"
        self.names = [f"{self.tag}h{i}" for i in range(hosts)]
        self.procs: list[subprocess.Popen] = []
        self._made: list[str] = []

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def __enter__(self) -> "NetLab":
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        self._add_ns(self.bridge_ns)
        run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        # Bridged frames skip the host's iptables (where br_netfilter is loaded, it would filter them)
        run(["ip", "netns", "exec", self.bridge_ns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0",
             "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0"], check=False)
        for i, ns in enumerate(self.names):
            self._add_ns(ns)
            run(["ip", "-n", ns, "link", "add", "eth0", "mtu", str(self.mtu), "type", "veth",
                 "peer", "name", f"p{i}", "mtu", str(self.mtu), "netns", self.bridge_ns])
            run(["ip", "-n", self.bridge_ns, "link", "set", f"p{i}", "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])
        run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "mtu", str(self.mtu), "up"])
        if self.rate:
            for i in range(len(self.names)):
                self.shape(i, self.rate)

    def add_tap(self, name: str) -> tuple[str, str]:
        """A tap device on the bridge, for a QEMU guest to join the hosts' segment (Vm(tap=...));
        returns (namespace, device): QEMU runs in the bridge's namespace."""
        run(["ip", "-n", self.bridge_ns, "tuntap", "add", "dev", name, "mode", "tap"])
        run(["ip", "-n", self.bridge_ns, "link", "set", name, "mtu", str(self.mtu), "master", "br0", "up"])
        return self.bridge_ns, name

    def shape(self, i: int, rate: str, *, latency_ms: int = 20) -> None:
        """Shape host i's link to `rate` both ways (tc tbf).

        burst: 4 ms of traffic (at least 64 KiB, so a 9000-byte frame and a GSO
        segment fit); limit: `latency_ms` of queue behind the bucket, then drops.
        """
        burst = max(64 << 10, int(rate_bits(rate) / 8 * 0.004))
        tbf = ["tbf", "rate", rate, "burst", str(burst), "latency", f"{latency_ms}ms"]
        run(["tc", "-n", self.names[i], "qdisc", "replace", "dev", "eth0", "root", *tbf])
        run(["tc", "-n", self.bridge_ns, "qdisc", "replace", "dev", f"p{i}", "root", *tbf])

    def drops(self, i: int) -> int:
        """Packets the shapers of host i's link dropped (both directions)."""
        total = 0
        for ns, dev in ((self.names[i], "eth0"), (self.bridge_ns, f"p{i}")):
            out = run(["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev]).stdout
            total += sum(int(m) for m in re.findall(r"dropped (\d+)", out))
        return total

    def _add_ns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self._made.append(name)

    def argv(self, i: int, argv: list[str]) -> list[str]:
        """argv run inside host i."""
        return ["ip", "netns", "exec", self.names[i], *argv]

    def ais(self, i: int, *args: str) -> list[str]:
        """`ais ARGS` run inside host i."""
        return self.argv(i, ais_command(*args))

    def spawn(self, i: int, argv: list[str], **kw) -> subprocess.Popen:
        proc = start(self.argv(i, argv), **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        self.procs.clear()
        for name in reversed(self._made):
            run(["ip", "netns", "del", name], check=False)
        self._made.clear()
