"""ais.agent.commands: `ais agent` refuses bad arguments (UsageError, exit 2) before it starts anything."""

import argparse

import pytest

from ais.agent import commands
from ais.agent.commands import _listen, _non_negative, _positive, cmd_agent
from ais.errors import UsageError

KEY = "ab" * 32


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root" / "var/lib/rpm").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def started(monkeypatch):
    """Records an Agent that would have run (so a test that passes every check starts nothing)."""
    import ais.agent.service as service

    made = []

    class FakeAgent:
        def __init__(self, config):
            made.append(config)

    async def no_run(agent, seconds):
        return None

    monkeypatch.setattr(service, "Agent", FakeAgent)
    monkeypatch.setattr(commands, "_run", no_run)
    return made


def args(root, tmp_path, **changes):
    token = tmp_path / "token"
    token.write_text("secret\n")
    values = dict(server="http://10.0.0.1:8470", host="web01", token_file=token, listen="10.0.0.21:8472", root=root,
                  state=tmp_path / "state", update_key=None, cgroup="", idle_cpu=0.5, idle_memory=0.9, idle_net=10.0,
                  idle_seconds=10.0, fanout=3, sync_seconds=10.0, refresh_seconds=30.0, sample_seconds=1.0,
                  seconds=None, site_ca=None)
    values.update(changes)
    return argparse.Namespace(**values)


def test_good_arguments_make_an_agent(root, tmp_path, started, monkeypatch):
    monkeypatch.delenv("AIS_TOKEN", raising=False)
    assert cmd_agent(args(root, tmp_path, update_key=KEY, idle_net=2.0)) == 0
    (config,) = started
    assert (config.host, config.token, config.listen, config.update_key) == ("web01", "secret", ("10.0.0.21", 8472),
                                                                            KEY)
    assert config.thresholds.net == 2e6


@pytest.mark.parametrize("host", ["Web01", "web_01", "", "-web", "a" * 64, "web01/x"])
def test_bad_host(root, tmp_path, started, host):
    with pytest.raises(UsageError, match="--host"):
        cmd_agent(args(root, tmp_path, host=host))
    assert started == []


def test_root_without_an_rpm_database(tmp_path, started):
    with pytest.raises(UsageError, match="--root"):
        cmd_agent(args(tmp_path / "empty", tmp_path))
    assert started == []


@pytest.mark.parametrize("listen", ["10.0.0.21", "10.0.0.21:", ":8472", "10.0.0.21:0", "10.0.0.21:65536",
                                    "10.0.0.21:http", "10.0.0.21:-1", ""])
def test_bad_listen(root, tmp_path, started, listen):
    with pytest.raises(UsageError, match="--listen"):
        cmd_agent(args(root, tmp_path, listen=listen))
    assert started == []


# (server URL, the site CA given, words of the refusal)
BAD_SERVERS = [
    ("https://10.0.0.1:8470", None, "HTTPS needs the site CA"),
    ("http://10.0.0.1:8470", "ca.pem", "must be https://"),
    ("10.0.0.1:8470", None, "expected https://HOST:PORT"),
    ("ftp://10.0.0.1", None, "expected https://HOST:PORT"),
]


@pytest.mark.parametrize("server, ca, words", BAD_SERVERS)
def test_bad_server(root, tmp_path, started, server, ca, words):
    with pytest.raises(UsageError, match=words):
        cmd_agent(args(root, tmp_path, server=server, site_ca=tmp_path / ca if ca else None))
    assert started == []


def test_no_token(root, tmp_path, started, monkeypatch):
    monkeypatch.delenv("AIS_TOKEN", raising=False)
    with pytest.raises(UsageError, match="no token"):
        cmd_agent(args(root, tmp_path, token_file=tmp_path / "missing"))
    assert started == []


def test_token_from_the_environment(root, tmp_path, started, monkeypatch):
    monkeypatch.setenv("AIS_TOKEN", "from-env")
    cmd_agent(args(root, tmp_path, token_file=tmp_path / "missing"))
    assert started[0].token == "from-env"


def test_bad_update_key(root, tmp_path, started):
    with pytest.raises(UsageError):
        cmd_agent(args(root, tmp_path, update_key="not-a-key"))
    assert started == []


@pytest.mark.parametrize("text, port", [("10.0.0.1:1", 1), ("h:65535", 65535), ("[::1]:8472", 8472)])
def test_listen_parses(text, port):
    assert _listen(text)[1] == port


@pytest.mark.parametrize("text", ["0", "-1", "x", "nan", "inf", "1e7"])
def test_positive_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        _positive(text)


@pytest.mark.parametrize("text", ["-0.1", "x", "nan", "inf", "1e9"])
def test_non_negative_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        _non_negative(text)


def test_number_types_accept():
    assert _positive("0.5") == 0.5 and _non_negative("0") == 0.0


def test_a_relative_root_and_state_become_absolute(root, tmp_path, started, monkeypatch):
    """rpm --root refuses a relative root: the agent resolves both (a bench run with --keep build/x failed
    every update with 'rpm -qa exited 1')."""
    monkeypatch.chdir(tmp_path)
    assert cmd_agent(args(root.relative_to(tmp_path), tmp_path, state="state")) == 0
    (config,) = started
    assert config.root == root and config.state == tmp_path / "state"
