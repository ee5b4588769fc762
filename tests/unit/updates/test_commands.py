"""ais.updates.commands: an install op from a repository package, and announcing with nobody online."""

from types import SimpleNamespace

import pytest

from ais.errors import UsageError
from ais.updates import commands
from ais.updates.commands import announce, install_op
from ais.updates.records import Op, Update

SHA = "ab" * 32


def package(name, version, release="1", epoch=0):
    nevra = f"{name}-{epoch}:{version}-{release}.x86_64"
    return SimpleNamespace(name=name, epoch=epoch, version=version, release=release, nevra=nevra,
                           filename=f"Packages/{name}-{version}-{release}.x86_64.rpm", size=len(nevra),
                           digest=SHA)


PACKAGES = [package("bash", "5.2"), package("bash", "5.10"), package("bash", "5.9"), package("vim", "9.1")]


@pytest.mark.parametrize("text, name, nevra, file", [
    ("bash-0:5.2-1.x86_64", "bash", "bash-0:5.2-1.x86_64", "bash-5.2-1.x86_64.rpm"),  # a NEVRA
    ("bash-5.9-1.x86_64.rpm", "bash", "bash-0:5.9-1.x86_64", "bash-5.9-1.x86_64.rpm"),  # a file name
    ("bash", "bash", "bash-0:5.10-1.x86_64", "bash-5.10-1.x86_64.rpm"),  # a name: newest by rpm, not by string
    ("vim", "vim", "vim-0:9.1-1.x86_64", "vim-9.1-1.x86_64.rpm"),
])
def test_install_op(text, name, nevra, file):
    assert install_op(PACKAGES, text) == Op(action="install", name=name, nevra=nevra, file=file, size=len(nevra),
                                            sha256=SHA)


@pytest.mark.parametrize("text", ["zsh", "bash-0:6.0-1.x86_64", "Packages/bash-5.2-1.x86_64.rpm", ""])
def test_install_op_refuses_what_the_repository_lacks(text):
    with pytest.raises(UsageError):
        install_op(PACKAGES, text)


@pytest.mark.parametrize("urgent", [False, True])
@pytest.mark.parametrize("agents", [
    {},
    {"web01": {"online": False, "address": "10.0.0.1:8472"}},
    {"web01": {"online": True, "address": None}},
    {"other": {"online": True, "address": "10.0.0.9:8472"}},  # online, but not a member
], ids=["none known", "offline", "no address", "not a member"])
def test_announce_with_no_agent_online_tells_nobody(monkeypatch, agents, urgent):
    posted = []
    monkeypatch.setattr(commands, "_post", lambda url, body: posted.append(url) or True)
    update = Update(seq=1, group="rack-a", urgent=urgent, ops=(Op(action="erase", name="telnet"),))
    assert announce(update, ["web01", "web02"], agents, 3) == []
    assert posted == []


def test_announce_tells_fanout_online_members(monkeypatch):
    posted = []
    monkeypatch.setattr(commands, "_post", lambda url, body: posted.append((url, body)) or True)
    agents = {f"web0{i}": {"online": True, "address": f"10.0.0.{i}:8472"} for i in range(1, 6)}
    update = Update(seq=1, group="rack-a", ops=(Op(action="erase", name="telnet"),))
    told = announce(update, sorted(agents), agents, 2)
    assert len(told) == 2 and set(told) <= set(agents)
    assert all(body["tree"] is None and body["updates"][0]["seq"] == 1 for _, body in posted)


def test_announce_urgent_tells_the_tree_root_only(monkeypatch):
    posted = []
    monkeypatch.setattr(commands, "_post", lambda url, body: posted.append((url, body)) or True)
    agents = {f"web0{i}": {"online": True, "address": f"10.0.0.{i}:8472"} for i in range(1, 6)}
    update = Update(seq=1, group="rack-a", urgent=True, ops=(Op(action="erase", name="telnet"),))
    told = announce(update, sorted(agents), agents, 2)
    assert len(told) == 1 and len(posted) == 1
    tree = posted[0][1]["tree"]
    assert sorted(tree) == sorted(agents) and tree[0] == told[0]


def test_announce_unreachable_agent_is_not_told():
    agents = {"web01": {"online": True, "address": "127.0.0.1:1"}}  # nothing listens on port 1
    update = Update(seq=1, group="rack-a", ops=(Op(action="erase", name="telnet"),))
    assert announce(update, ["web01"], agents, 3) == []
