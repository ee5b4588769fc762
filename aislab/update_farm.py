"""A farm of installed hosts kept current by `ais agent`: the lab of in-place updates (issue 14).

What it builds (`UpdateFarm(base, demo_repo, hosts=20)` as a context manager):
- a site repository: the demo's busybox-base and filesystem plus the update set of
  `aislab.update_rpms` (upd-NN at versions 1.0 .. V.0) and any `extra_rpms` a test built,
  with createrepo_c's repodata (`rpm_op(path)` makes an install op for such an RPM);
- descriptors: one SCD (`updhost`), groups `rack-a` (the first half) and `rack-b` (the
  rest), one HCD per host with a token;
- one installed root per host (the template root: every upd-NN at 1.0), its agent state
  directory and its own cpuacct cgroup (empty: the host is idle; `busy(i)` runs a
  loop in it that uses up to half a CPU);
- a NetLab: namespace 0 runs `ais serve` and a submitter (`python -m aislab.update_farm
  submitter`, which stores, signs and announces updates as `ais update submit` does,
  without loading the site for each of 200 updates); namespaces 1..N run the agents.
The test or benchmark submits updates (`submit`), starts, stops and kills agents (`kill_agent`:
SIGKILL of the agent and every process under it, a power cut), and
reads what happened from the server's database (`results`) and the roots' rpm databases.
`expected(i)` folds the submitted updates of a host's groups over the initial state.

Reads: the demo repository (build/repo). Needs root (namespaces, cgroups).
Fails with `WorldError` when a process does not start. Returns paths, sets and dicts.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from ais.errors import WorldError
from ais.files import file_sha256
from ais.rpmenv import installed_nevras
from ais.run import run, start
from ais.updates.records import target_state, parse_update
from ais.updates.signing import load_or_make_key, public_hex
from aislab.lines import next_line
from aislab.net import NetLab, ais_command
from aislab.update_rpms import base_rpms, build_update_rpms, copy_root, make_host_root

ROOT = Path(__file__).resolve().parents[1]
CGROUP_MOUNT = Path("/run/ais-lab-cpuacct")  # the cpuacct hierarchy again: `ip netns exec` hides /sys/fs/cgroup
AGENT_PORT = 8472
_FARMS = itertools.count()
# Every process of the farm imports `ais` from this checkout (PYTHONPATH): the `ais` entry point
# alone would import the package its venv was installed from, perhaps another checkout.
BUSY_LOOP = "import time\nwhile True:\n    t = time.time()\n    while time.time() - t < 0.02: pass\n    time.sleep(0.02)\n"


class UpdateFarm:
    def __init__(self, base: Path, demo_repo: Path, *, hosts: int = 20, versions: int = 11,
                 agent_options: tuple[str, ...] = (), extra_rpms: tuple[Path, ...] | list[Path] = ()):
        self.base, self.demo_repo, self.n = Path(base), Path(demo_repo), hosts
        self.names = [f"h{i:02d}" for i in range(1, hosts + 1)]
        self.groups = {"rack-a": self.names[: hosts // 2], "rack-b": self.names[hosts // 2:]}
        self.versions = versions
        self.agent_options = agent_options
        self.extra_rpms = [Path(p) for p in extra_rpms]
        self.agents: dict[int, subprocess.Popen] = {}
        self.busy_procs: dict[int, subprocess.Popen] = {}
        self.submitted = []
        self.tag = f"upd{os.getpid() % 100000}n{next(_FARMS)}"  # farms alive at once (a module's, a test's) differ
        self.cgroup = self.tag
        self.lab: NetLab | None = None

    # ------------------------------------------------------------------ set-up
    def __enter__(self) -> "UpdateFarm":
        self.updates = build_update_rpms(ROOT / "build" / "update-rpms", names=20, versions=self.versions)
        self._repo()
        self._descriptors()
        template = make_host_root(ROOT / "build" / "update-root", self.demo_repo, self.updates)
        self.initial = installed_nevras(template)
        _mount_cpuacct()
        for name in self.names:
            copy_root(template, self.base / "roots" / name)
            (CGROUP_MOUNT / self.cgroup / name).mkdir(parents=True, exist_ok=True)
        self.history = self.base / "history.sqlite"
        self.key_path = self.base / "update-key.pem"
        self.update_key = public_hex(load_or_make_key(self.key_path))
        self.lab = NetLab(self.n + 1, self.tag, rate="1gbit").__enter__()
        try:
            self._serve()
            self._submitter()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _repo(self) -> None:
        self.repo = self.base / "repo"
        (self.repo / "RPMS").mkdir(parents=True)
        for path in [*base_rpms(self.demo_repo), *sorted(self.updates.dir.glob("*.rpm")), *self.extra_rpms]:
            os.link(path, self.repo / "RPMS" / path.name) if _same_fs(path, self.repo) else \
                run(["cp", "-a", str(path), str(self.repo / "RPMS")])
        run(["createrepo_c", "--quiet", str(self.repo)], timeout=300)

    def _descriptors(self) -> None:
        d = self.descriptors = self.base / "descriptors"
        (d / "scd").mkdir(parents=True)
        (d / "hcd").mkdir()
        (d / "scd" / "updhost.xml").write_text(
            '<scd name="updhost" kind="base"><package name="filesystem"/><package name="busybox-base"/></scd>\n')
        (d / "groups.xml").write_text("<groups>\n" + "".join(
            f'  <group name="{g}">half of the farm</group>\n' for g in self.groups) + "</groups>\n")
        self.tokens = {}
        for i, name in enumerate(self.names):
            self.tokens[name] = f"token-{name}-{os.urandom(8).hex()}"
            group = next(g for g, members in self.groups.items() if name in members)
            (d / "hcd" / f"{name}.xml").write_text(
                f'<hcd name="{name}" scd="updhost"><mac>52:54:00:aa:00:{i + 1:02x}</mac>'
                f"<token>{self.tokens[name]}</token><group>{group}</group></hcd>\n")

    def _serve(self) -> None:
        self.serve_log = open(self.base / "serve.log", "ab")
        address = self.lab.address(0)
        argv = [*ais_command(), "serve", "--plain-http", "--descriptors", str(self.descriptors),
                "--repo", str(self.repo),
                "--cache", str(self.base / "cache"), "--history", str(self.history), "--update-key",
                str(self.key_path), "--listen", f"{address}:8470", "--stream-listen", f"{address}:0", "--poll", "0.5"]
        (self.base / "cache").mkdir(exist_ok=True)
        self.server = self.lab.spawn(0, argv, stderr=self.serve_log, cwd=ROOT,
                                     env={"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
        line = next_line(self.server.stdout, 60)
        if not line.startswith('{"listening"'):
            raise WorldError(f"ais serve did not start: {line!r}; see {self.base / 'serve.log'}")
        self.url = json.loads(line)["listening"]["url"]

    def stop_server(self) -> None:
        self.server.kill()
        self.server.wait()
        self.serve_log.close()

    def start_server(self) -> None:
        self._serve()

    def post(self, address: str, path: str, body: dict | None) -> tuple[int, str]:
        """POST JSON (GET when body is None) to an agent from namespace 0 (where the server runs):
        (status, body text); status 0 when it did not answer."""
        script = ("import sys, urllib.request, urllib.error\n"
                  "data = sys.stdin.buffer.read() or None\n"
                  "req = urllib.request.Request(sys.argv[1], data=data, method='POST' if data else 'GET')\n"
                  "try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n"
                  "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
                  "except OSError as e:\n    print(0); print(e)\n")
        out = run(self.lab.argv(0, [sys.executable, "-c", script, f"http://{address}{path}"]),
                  input="" if body is None else json.dumps(body)).stdout
        status, _, text = out.partition("\n")
        return int(status), text

    def knows_peers(self, i: int, peers) -> bool:
        """Does agent i know the address of each of these hosts (its /v1/agent/stats)?"""
        status, text = self.post(self.address(i), "/v1/agent/stats", None)
        return status == 200 and all(json.loads(text)["peers"].get(self.names[p]) for p in peers)

    def _submitter(self) -> None:
        argv = [sys.executable, "-m", "aislab.update_farm", "submitter", str(self.history), str(self.key_path),
                json.dumps(self.groups)]
        self.submit_proc = start(self.lab.argv(0, argv), cwd=ROOT, stdin=subprocess.PIPE,
                                 env={"PYTHONPATH": str(ROOT)})

    def close(self) -> None:
        for i in list(self.busy_procs):
            self.idle(i)
        for i in list(self.agents):
            self.stop_agent(i)
        if self.lab:
            self.lab.close()
            self.lab = None
        for name in self.names:
            try:
                (CGROUP_MOUNT / self.cgroup / name).rmdir()
            except OSError:
                pass
        try:
            (CGROUP_MOUNT / self.cgroup).rmdir()
        except OSError:
            pass

    # ------------------------------------------------------------------ agents
    def address(self, i: int) -> str:
        return f"{self.lab.address(i + 1)}:{AGENT_PORT}"

    def start_agent(self, i: int, *extra: str) -> None:
        name = self.names[i]
        log = open(self.base / f"agent-{name}.log", "ab")
        argv = [*ais_command(), "agent", "run", "--server", self.url, "--host", name, "--listen", self.address(i),
                "--root", str(self.base / "roots" / name), "--state", str(self.base / "state" / name),
                "--update-key", self.update_key, "--cgroup", str(CGROUP_MOUNT / self.cgroup / name), *self.agent_options, *extra]
        self.agents[i] = self.lab.spawn(i + 1, argv, stderr=log, cwd=ROOT,
                                        env={"AIS_TOKEN": self.tokens[name], "PYTHONUNBUFFERED": "1",
                                             "PYTHONPATH": str(ROOT)})
        log.close()

    def stop_agent(self, i: int) -> None:
        proc = self.agents.pop(i)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill_agent(self, i: int) -> None:
        """Power off: SIGKILL the agent and every process under it (an rpm transaction in flight
        and its scriptlet's shell), the agent first so it starts nothing new."""
        proc = self.agents.pop(i)
        stopped = _stop_tree(proc.pid)
        for pid in stopped:
            _signal(pid, signal.SIGKILL)
        proc.wait()

    def log(self, i: int) -> str:
        return (self.base / f"agent-{self.names[i]}.log").read_text(errors="replace")

    def busy(self, i: int) -> None:
        proc = start([sys.executable, "-c", BUSY_LOOP])
        (CGROUP_MOUNT / self.cgroup / self.names[i] / "cgroup.procs").write_text(str(proc.pid))
        self.busy_procs[i] = proc

    def idle(self, i: int) -> None:
        proc = self.busy_procs.pop(i)
        proc.kill()
        proc.wait()

    # ------------------------------------------------------------------ updates
    def op(self, name: str, version: str | None) -> dict:
        if version is None:
            return {"action": "erase", "name": name}
        return {"action": "install", "name": name, "nevra": self.updates.nevra(name, version),
                "file": self.updates.rpm(name, version).name, "size": self.updates.size(name, version),
                "sha256": self.updates.sha256(name, version)}

    def rpm_op(self, path: Path) -> dict:
        """The install op of an RPM file in the site repository (one of `extra_rpms`)."""
        fmt = "%{NAME}\\n%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n"
        name, evra = run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fmt, str(path)]).stdout.split()
        return {"action": "install", "name": name, "nevra": f"{name}-{evra}", "file": Path(path).name,
                "size": Path(path).stat().st_size, "sha256": file_sha256(path)}

    def submit(self, group: str, ops: list[dict], urgent: bool = False) -> dict:
        """Store, sign and announce an update (the submitter in namespace 0): {"seq", "told"}."""
        self.submit_proc.stdin.write(json.dumps({"group": group, "ops": ops, "urgent": urgent}) + "\n")
        self.submit_proc.stdin.flush()
        line = next_line(self.submit_proc.stdout, 60)
        if not line:
            raise WorldError("the submitter did not answer")
        answer = json.loads(line)
        self.submitted.append(answer["update"])
        return answer

    def groups_of(self, i: int) -> set[str]:
        return {"all", "scd:updhost", *(g for g, m in self.groups.items() if self.names[i] in m)}

    def expected(self, i: int) -> set[str]:
        """The initial packages with the host's groups' updates folded in sequence order."""
        mine = [parse_update(u) for u in self.submitted if u["group"] in self.groups_of(i)]
        by_name = {n.split("-0:")[0]: n for n in self.initial}
        for name, nevra in target_state(mine).items():
            if nevra is None:
                by_name.pop(name, None)
            else:
                by_name[name] = nevra
        return set(by_name.values())

    def installed(self, i: int) -> set[str]:
        return installed_nevras(self.base / "roots" / self.names[i])

    def results(self) -> dict[tuple[str, int], dict]:
        """{(host, seq): {state, at, message}} from the server's database."""
        if not self.history.exists():
            return {}
        with closing(sqlite3.connect(f"file:{self.history}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("SELECT host, seq, state, at, message FROM update_results").fetchall()
        return {(h, s): {"state": st, "at": at, "message": m} for h, s, st, at, m in rows}

    def missing(self, hosts=None) -> list[tuple[str, int]]:
        """(host, seq) of submitted updates a host's agent has not reported applied."""
        res = self.results()
        idx = range(self.n) if hosts is None else hosts
        return [(self.names[i], u["seq"]) for i in idx for u in self.submitted
                if u["group"] in self.groups_of(i) and res.get((self.names[i], u["seq"]), {}).get("state") != "applied"]

    def wait(self, predicate, timeout: float, what: str) -> float:
        """Seconds until predicate() is true (polled); WorldError naming `what` after timeout."""
        start_at = time.monotonic()
        while not predicate():
            if time.monotonic() - start_at > timeout:
                raise WorldError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)
        return time.monotonic() - start_at


def _mount_cpuacct() -> None:
    if not (CGROUP_MOUNT / "cpuacct.usage").exists():
        CGROUP_MOUNT.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "cgroup", "-o", "cpuacct", "ais-lab-cpuacct", str(CGROUP_MOUNT)])


def _stop_tree(pid: int) -> list[int]:
    """SIGSTOP pid and every process under it, until no new one appears (none can fork then)."""
    stopped: list[int] = []
    found = [pid]
    while found:
        for p in found:
            _signal(p, signal.SIGSTOP)
        stopped += found
        found = [p for p in _descendants(pid) if p not in stopped]
    return stopped


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> list[int]:
    """Every process under pid (children, grandchildren...), from /proc, parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def submitter(history: str, key_path: str, groups_json: str) -> int:
    """Read {"group", "ops", "urgent"} lines; store, sign, announce each; print {"update", "told"}."""
    from ais.updates.commands import announce
    from ais.updates.records import Op
    from ais.updates.store import UpdateStore
    from ais.updates.records import as_dict
    import msgspec

    store = UpdateStore(history)
    key = load_or_make_key(Path(key_path))
    groups = json.loads(groups_json)
    everyone = sorted({h for m in groups.values() for h in m})
    for line in sys.stdin:
        req = json.loads(line)
        ops = tuple(msgspec.convert(op, Op) for op in req["ops"])
        update = store.submit(req["group"], ops, key, urgent=req["urgent"], origin="lab")
        members = everyone if req["group"] == "all" else groups[req["group"]]
        told = announce(update, members, store.agents(), 3)
        print(json.dumps({"update": as_dict(update), "told": told}), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["submitter"]:
        sys.exit(submitter(*sys.argv[2:5]))
    sys.exit("usage: python -m aislab.update_farm submitter HISTORY KEY GROUPS_JSON")


class Workload:
    """Clumpt-like updates: the k-th goes to all, rack-a, rack-b in turn; it upgrades the next
    package to its next version, and every 17th erases one (a later update installs it again)."""

    GROUPS = ("all", "rack-a", "rack-b")

    def __init__(self, farm: UpdateFarm):
        self.farm = farm
        self.k = 0
        self.next_version = {name: 1 for name in farm.updates.names}  # index into versions

    def next(self) -> tuple[str, list[dict]]:
        self.k += 1
        group = self.GROUPS[self.k % 3]
        names = self.farm.updates.names
        name = names[self.k % len(names)]
        if self.k % 17 == 0:
            return group, [self.farm.op(names[(self.k + 7) % len(names)], None)]
        index = min(self.next_version[name], len(self.farm.updates.versions) - 1)
        self.next_version[name] += 1
        return group, [self.farm.op(name, self.farm.updates.versions[index])]

    def submit(self, count: int) -> list[dict]:
        return [self.farm.submit(*self.next()) for _ in range(count)]
