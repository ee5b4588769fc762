"""ais.agent.idle: idleness from load counters over time (a fake clock and a fake load), and Load's sources."""

import pytest

from ais.agent.idle import IdleDetector, Load, Thresholds
from ais.errors import UsageError

THRESHOLDS = Thresholds(cpu=0.5, memory=0.9, net=10e6, idle_seconds=10.0)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeLoad:
    """Counters a test drives: cpu_per_s CPUs and net_per_s bytes/s since the last tick, memory a fraction."""

    def __init__(self, clock):
        self.clock, self.cpu, self.net, self.memory = clock, 0.0, 0, 0.1
        self.cpu_per_s, self.net_per_s = 0.1, 1000

    def tick(self, seconds=1.0):
        self.clock.now += seconds
        self.cpu += self.cpu_per_s * seconds
        self.net += int(self.net_per_s * seconds)

    def cpu_seconds(self):
        return self.cpu

    def net_bytes(self):
        return self.net

    def memory_fraction(self):
        return self.memory


@pytest.fixture
def watched():
    clock = FakeClock()
    load = FakeLoad(clock)
    detector = IdleDetector(load, THRESHOLDS, clock=clock)
    detector.sample()
    return detector, load


def run(detector, load, seconds):
    for _ in range(seconds):
        load.tick()
        detector.sample()


def test_not_idle_before_idle_seconds_then_idle(watched):
    detector, load = watched
    assert not detector.idle()
    run(detector, load, 9)
    assert not detector.idle()
    run(detector, load, 1)
    assert detector.idle()


BUSY = {
    "cpu": (lambda load: setattr(load, "cpu_per_s", 2.0), "CPU"),
    "memory": (lambda load: setattr(load, "memory", 0.95), "memory"),
    "network": (lambda load: setattr(load, "net_per_s", 50e6), "network"),
}


@pytest.mark.parametrize("make_busy, named", BUSY.values(), ids=BUSY.keys())
def test_a_busy_sample_resets_idleness_and_says_why(watched, make_busy, named):
    detector, load = watched
    run(detector, load, 12)
    assert detector.idle()
    make_busy(load)
    run(detector, load, 1)
    assert not detector.idle()
    assert named in detector.why and not any(other in detector.why for other in ("CPU", "memory", "network")
                                             if other != named)
    load.cpu_per_s, load.memory, load.net_per_s = 0.1, 0.1, 1000
    run(detector, load, 9)
    assert not detector.idle()
    run(detector, load, 1)
    assert detector.idle()


def test_at_the_threshold_is_not_busy(watched):
    detector, load = watched
    load.cpu_per_s, load.memory, load.net_per_s = 0.5, 0.9, 10e6
    run(detector, load, 10)
    assert detector.idle()


def test_every_reason_is_named(watched):
    detector, load = watched
    load.cpu_per_s, load.memory, load.net_per_s = 3.0, 0.99, 1e9
    run(detector, load, 1)
    assert all(word in detector.why for word in ("CPU", "memory", "network"))


def test_whole_machine_load_reads_proc():
    load = Load("")
    assert load.cpu_seconds() >= 0
    assert 0 <= load.memory_fraction() <= 1
    assert load.net_bytes() >= 0


@pytest.mark.parametrize("cgroup", ["/nonexistent/x", "nonexistent-ais-test.slice/x"])
def test_missing_cgroup_is_a_usage_error(cgroup):
    with pytest.raises(UsageError):
        Load(cgroup)


def test_cgroup_v2_directory(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (tmp_path / "memory.current").write_text("1000\n")
    (tmp_path / "memory.max").write_text("4000\n")
    load = Load(str(tmp_path))
    assert load.cpu_seconds() == 2.5
    assert load.memory_fraction() == 0.25


def test_cgroup_v1_directory_without_limit(tmp_path):
    (tmp_path / "cpuacct.usage").write_text("3000000000\n")
    load = Load(str(tmp_path))
    assert load.cpu_seconds() == 3.0
    assert 0 <= load.memory_fraction() <= 1  # no memory file: the whole machine's


def test_a_load_that_cannot_be_read_counts_as_busy_and_says_why(watched):
    """A cgroup removed under a running agent: before, sample() raised and the agent's idle loop died
    silently, leaving the host idle (or busy) for good."""
    detector, load = watched
    run(detector, load, 15)
    assert detector.idle()

    def gone():
        raise FileNotFoundError(2, "No such file or directory", "/cgroup/cpuacct.usage")

    load.cpu_seconds = gone
    load.tick()
    detector.sample()
    assert not detector.idle() and "cannot read the load" in detector.why
    del load.cpu_seconds  # back: idle again after idle_seconds
    run(detector, load, 15)
    assert detector.idle()
