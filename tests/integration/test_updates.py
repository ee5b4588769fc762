"""In-place updates replayed as Clumpt's evaluation: 20 real agents in network namespaces, each with its
own installed root, two groups plus `all`, 200 updates of small real RPMs (aislab.update_farm).

The scenario (one run, shared by the tests below):
1. half the hosts run their agent; h03 is kept busy (a loop in the cgroup its agent watches);
2. 100 updates are submitted; the running idle hosts apply them all; h03 applies none of them
   and the server hears that they wait for idle;
3. an urgent update for h03's group: h03 applies it at once, still busy;
4. the other half of the hosts start, 101 updates behind, and catch up;
5. three hosts go away (two stopped, one killed like a power cut), 99 more updates are submitted,
   they come back and catch up in sequence order;
6. h03 becomes idle and applies what waited.
Every host must end with the rpm database its groups' updates say (the fold of the updates in
sequence order over the initial root, computed here independently), hosts of one group
identical, `rpm -Va` clean, and most package bytes must have come from peers, not the server.
"""

import re
import json

import pytest

from aislab.update_farm import UpdateFarm, Workload
from ais.rpmenv import verify

pytestmark = [pytest.mark.root, pytest.mark.rpm, pytest.mark.slow]
OPTIONS = ("--idle-seconds", "1", "--sample-seconds", "0.25", "--sync-seconds", "2", "--refresh-seconds", "5",
           "--idle-cpu", "0.02")  # the idle hosts' cgroups are empty (0 CPU); the busy one uses ~0.5
TIMEOUT = 300  # a safety net against a hung run, never a moment the test relies on
BUSY = 2  # h03, in rack-a
AWAY = (1, 11)  # h02, h12: stopped
POWER_CUT = 4  # h05: killed


@pytest.fixture(scope="module")
def run(tmp_path_factory, repo_dir):
    seen = {}
    with UpdateFarm(tmp_path_factory.mktemp("updates"), repo_dir, hosts=20, agent_options=OPTIONS) as farm:
        first = [i for i in range(20) if i % 10 < 5]
        second = [i for i in range(20) if i % 10 >= 5]
        farm.busy(BUSY)
        for i in first:
            farm.start_agent(i)
        farm.wait(lambda: all(farm.knows_peers(i, set(first) - {i}) for i in first), TIMEOUT,
                  "the first half's agents to know each other's addresses")
        work = Workload(farm)
        work.submit(100)
        idle_first = [i for i in first if i != BUSY]
        farm.wait(lambda: not farm.missing(idle_first), TIMEOUT, "the first half to apply 100 updates")
        seen["busy_states"] = {s: farm.results().get((farm.names[BUSY], s), {}).get("state")
                               for s in range(1, 101) if farm.submitted[s - 1]["group"] in farm.groups_of(BUSY)}
        urgent = farm.submit("rack-a", [farm.op("upd-20", farm.updates.versions[-1])], urgent=True)["update"]["seq"]
        seen["urgent"] = urgent
        farm.wait(lambda: farm.results().get((farm.names[BUSY], urgent), {}).get("state") == "applied", TIMEOUT,
                  "the busy host to apply the urgent update")
        seen["busy_after_urgent"] = sum(1 for _, s in farm.missing([BUSY]))
        for i in second:
            farm.start_agent(i)
        farm.wait(lambda: not farm.missing(second), TIMEOUT, "the second half to catch up 101 updates")
        for i in AWAY:
            farm.stop_agent(i)
        farm.kill_agent(POWER_CUT)
        work.submit(99)
        for i in (*AWAY, POWER_CUT):
            farm.start_agent(i)
        farm.idle(BUSY)
        farm.wait(lambda: not farm.missing(), TIMEOUT, "every host to apply every update of its groups")
        for i in list(farm.agents):
            farm.stop_agent(i)
        seen["installed"] = {i: farm.installed(i) for i in range(20)}
        seen["expected"] = {i: farm.expected(i) for i in range(20)}
        seen["verify"] = {i: verify(farm.base / "roots" / farm.names[i]) for i in (0, BUSY, 10, POWER_CUT)}
        seen["logs"] = {i: farm.log(i) for i in range(20)}
        seen["farm"] = farm
        seen["submitted"] = list(farm.submitted)
        yield seen


def test_every_host_has_what_its_groups_say(run):
    assert len(run["submitted"]) == 200
    for i, installed in run["installed"].items():
        assert installed == run["expected"][i], f"h{i + 1:02d}: {sorted(installed ^ run['expected'][i])}"
    # two hosts of a group and the rack's other half agree; the racks differ (their own updates)
    assert run["installed"][0] == run["installed"][9] and run["installed"][10] == run["installed"][19]
    assert run["installed"][0] != run["installed"][10]
    assert all(out == "" for out in run["verify"].values()), run["verify"]


def test_busy_host_waits_for_idle_but_takes_urgent_at_once(run):
    states = run["busy_states"]
    assert states and set(states.values()) <= {"waiting", None}, states  # nothing applied while busy
    assert "waiting" in states.values()
    assert run["busy_after_urgent"] > 0  # the urgent one went in; the others still waited
    log = run["logs"][BUSY]
    assert re.search(rf"applied updates {run['urgent']} in one transaction", log), log[-3000:]


def test_hosts_behind_and_away_catch_up_in_order(run):
    for i in (5, 15, *AWAY, POWER_CUT):
        ready = re.findall(r"agent ready in ([\d.]+) s", run["logs"][i])
        assert ready, run["logs"][i][-2000:]
    # the hosts that started 101 behind learned them from the server and their peers at init
    assert re.search(r"learned update \d+ \(group [a-z-]+\) from h\d\d", "".join(run["logs"][i] for i in range(20)))


def test_package_bytes_came_mostly_from_peers(run):
    stats = [json.loads(m) for log in run["logs"].values()
             for m in re.findall(r"agent stopped: (\{.*\})", log)]
    peers = sum(s.get("bytes_from_peers", 0) for s in stats)
    server = sum(s.get("bytes_from_server", 0) for s in stats)
    assert peers > server > 0, (peers, server)
