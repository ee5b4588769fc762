"""Keeping installed hosts current (issue 14): Clumpt's evaluation replayed on 20 real agents.

Run by `make bench-updates` (options: `ARGS="--hosts 20 --updates 100 --behind 100"`).

Topology: `aislab.update_farm.UpdateFarm`: a NetLab of N+1 network namespaces on one
bridge (1 Gbit/s links, tc), `ais serve` and the submitter in namespace 0, one `ais agent`
per host namespace, each with its own installed root (busybox-base, filesystem, upd-01 ..
upd-20 at 1.0) and an empty cgroup to watch (idle). Groups: rack-a (half), rack-b (the
other half) and all; updates go to all, rack-a and rack-b in turn, each one package
(2-20 KB payload, a %post scriptlet) upgraded or, every 17th, erased (aislab.update_farm.Workload).
Agents: load-aware mode, idle after 1 s under 0.02 CPUs, sync every 2 s.

Phases:
1. propagation: --updates updates, one every --interval seconds, all hosts up; for each
   update, the time from its submission until the last host of its group reports it
   applied (the agent's own clock: one machine);
2. behind and back: half the hosts stop; --behind updates are submitted; they start again;
   init + sync per host (the agent's "ready" line: group layout from the server, then a
   sync with up to 3 peers per group) and catch-up (start until its last missed update
   is applied);
3. bytes: package bytes the agents took from the server and from peers (their counters).
Printed next to Clumpt's published figures (20 peers, 223 updates of 2-20 KB, half the
peers 222 behind: init + sync <= 7 s, 2.4 s mean; any update at every peer within 10 s).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aislab.update_farm import UpdateFarm, Workload  # noqa: E402

OPTIONS = ("--idle-seconds", "1", "--sample-seconds", "0.25", "--sync-seconds", "2", "--refresh-seconds", "5",
           "--idle-cpu", "0.02")
TIMEOUT = 600


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--updates", type=int, default=100, help="phase 1 updates [%(default)s]")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between phase 1 updates [%(default)s]")
    p.add_argument("--behind", type=int, default=100, help="updates the stopped half misses [%(default)s]")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="run in DIR (new) and keep the agents' and server's logs there [a temporary directory]")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True)
        with UpdateFarm(work, ROOT / "build" / "repo", hosts=args.hosts, agent_options=OPTIONS) as farm:
            figures = run(farm, args)
    print_table(figures, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def run(farm: UpdateFarm, args) -> dict:
    everyone = list(range(farm.n))
    for i in everyone:
        farm.start_agent(i)
    farm.wait(lambda: all(farm.post(farm.address(i), "/v1/agent/sync", {"groups": [], "have": []})[0] == 200
                          for i in everyone), TIMEOUT, "every agent to answer")
    work = Workload(farm)
    sent = []
    for _ in range(args.updates):
        sent.append(work.submit(1)[0]["update"])
        time.sleep(args.interval)
    farm.wait(lambda: not farm.missing(), TIMEOUT, "phase 1 to converge")
    propagation = propagation_times(farm, sent)

    away = [i for i in everyone if i % 2 == 1]
    for i in away:
        farm.stop_agent(i)
    missed = [u["update"] for u in work.submit(args.behind)]
    farm.wait(lambda: not farm.missing([i for i in everyone if i not in away]), TIMEOUT, "the others to converge")
    restarted = {}
    for i in away:
        restarted[i] = time.time()
        farm.start_agent(i)
    farm.wait(lambda: not farm.missing(), TIMEOUT, "the hosts that were away to catch up")
    results = farm.results()
    catch_up = [max(results[(farm.names[i], u["seq"])]["at"] for u in missed if u["group"] in farm.groups_of(i))
                - restarted[i] for i in away]
    for i in list(farm.agents):
        farm.stop_agent(i)
    logs = {i: farm.log(i) for i in everyone}
    init = [float(re.findall(r"agent ready in ([\d.]+) s", logs[i])[-1]) for i in away]
    stats = [json.loads(m) for log in logs.values() for m in re.findall(r"agent stopped: (\{.*\})", log)]
    return {
        "hosts": farm.n, "updates": len(farm.submitted), "behind": len(missed),
        "propagation_s": {"mean": statistics.mean(propagation), "max": max(propagation)},
        "init_sync_s": {"mean": statistics.mean(init), "max": max(init)},
        "catch_up_s": {"mean": statistics.mean(catch_up), "max": max(catch_up)},
        "bytes_from_server": sum(s.get("bytes_from_server", 0) for s in stats),
        "bytes_from_peers": sum(s.get("bytes_from_peers", 0) for s in stats),
        "transactions": sum(s.get("transactions", 0) for s in stats),
        "applied": sum(s.get("applied", 0) for s in stats),
    }


def propagation_times(farm: UpdateFarm, updates: list[dict]) -> list[float]:
    results = farm.results()
    out = []
    for u in updates:
        hosts = [farm.names[i] for i in range(farm.n) if u["group"] in farm.groups_of(i)]
        out.append(max(results[(h, u["seq"])]["at"] for h in hosts) - u["submitted_at"])
    return out


def print_table(f: dict, args) -> None:
    print(f"\nbench-updates: {f['hosts']} agents, {f['updates']} updates ({f['behind']} missed by half the hosts), "
          "load-aware mode\n")
    print("| figure | AIS (this run) | Clumpt (published) |")
    print("| --- | --- | --- |")
    print(f"| init + sync per host, mean / max | {f['init_sync_s']['mean']:.2f} s / {f['init_sync_s']['max']:.2f} s "
          "| 2.4 s / 7 s (half the peers 222 behind) |")
    print(f"| propagation to the last host of the group, mean / max | {f['propagation_s']['mean']:.2f} s / "
          f"{f['propagation_s']['max']:.2f} s | every update within 10 s |")
    print(f"| catch-up after rejoin ({f['behind']} missed), mean / max | {f['catch_up_s']['mean']:.2f} s / "
          f"{f['catch_up_s']['max']:.2f} s | caught up with every update (no time given) |")
    total = f["bytes_from_server"] + f["bytes_from_peers"]
    print(f"| package bytes from the server / from peers | {f['bytes_from_server'] / 1e6:.2f} MB / "
          f"{f['bytes_from_peers'] / 1e6:.2f} MB ({f['bytes_from_peers'] / max(total, 1):.0%} from peers) | "
          "peers serve each other |")
    print(f"| rpm transactions for {f['applied']} host-updates | {f['transactions']} | one per update |")


if __name__ == "__main__":
    sys.exit(main())
