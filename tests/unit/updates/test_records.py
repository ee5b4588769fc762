"""ais.updates.records: target state folded by sequence number, the rpm delta, and strict parsing."""

import json

import pytest

from ais.errors import BadInput
from ais.updates.records import Op, Update, UpdateRefused, check_ops, delta, installed_by_name, parse_update, \
    target_state

SHA = "ab" * 32


def install(name, version="1.0", release="1", epoch=0):
    return Op(action="install", name=name, nevra=f"{name}-{epoch}:{version}-{release}.x86_64",
              file=f"{name}-{version}-{release}.x86_64.rpm", size=100, sha256=SHA)


def erase(name):
    return Op(action="erase", name=name)


def update(seq, *ops, group="all"):
    return Update(seq=seq, group=group, ops=tuple(ops))


def good_doc(**changes):
    doc = {"seq": 1, "group": "rack-a", "ops": [{"action": "install", "name": "bash",
                                                  "nevra": "bash-0:5.2-1.x86_64", "file": "bash-5.2-1.x86_64.rpm",
                                                  "size": 10, "sha256": SHA}]}
    doc.update(changes)
    return doc


def test_update_refused_is_bad_input():
    assert issubclass(UpdateRefused, BadInput)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_target_state_higher_seq_wins_whatever_the_order(order):
    updates = [update(1, install("bash", "5.1")), update(2, install("bash", "5.2"))]
    assert target_state([updates[i] for i in order]) == {"bash": "bash-0:5.2-1.x86_64"}


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_target_state_erase_then_reinstall(order):
    updates = [update(3, install("vim", "9.0")), update(5, erase("vim")), update(7, install("vim", "9.1"))]
    assert target_state([updates[i] for i in order]) == {"vim": "vim-0:9.1-1.x86_64"}


def test_target_state_later_erase_wins():
    updates = [update(9, erase("vim")), update(4, install("vim", "9.0"), install("bash"))]
    assert target_state(updates) == {"vim": None, "bash": "bash-0:1.0-1.x86_64"}


def test_target_state_of_nothing():
    assert target_state([]) == {}


def test_delta_installs_upgrades_downgrades_erases_and_leaves_the_rest():
    installed = ["bash-0:5.1-1.x86_64", "vim-0:9.1-1.x86_64", "telnet-0:0.17-1.x86_64",
                 "kernel-0:6.1-1.x86_64", "same-0:1.0-1.x86_64"]
    target = {"bash": "bash-0:5.2-1.x86_64",  # upgrade
              "vim": "vim-0:9.0-1.x86_64",  # downgrade
              "new": "new-0:1.0-1.x86_64",  # install
              "telnet": None,  # erase
              "ghost": None,  # erase of something not installed: nothing
              "same": "same-0:1.0-1.x86_64"}  # already there: nothing
    put, gone = delta(target, installed)
    assert put == ["bash-0:5.2-1.x86_64", "new-0:1.0-1.x86_64", "vim-0:9.0-1.x86_64"]
    assert gone == ["telnet"]


def test_delta_of_a_reached_target_is_empty():
    installed = ["bash-0:5.2-1.x86_64"]
    assert delta({"bash": "bash-0:5.2-1.x86_64", "telnet": None}, installed) == ([], [])


def test_installed_by_name_skips_what_is_not_a_nevra():
    assert installed_by_name(["bash-0:5.2-1.x86_64", "gpg-pubkey", ""]) == {"bash": "bash-0:5.2-1.x86_64"}


BAD_OPS = {
    "a name twice": (install("bash"), erase("bash")),
    "install without sha256": (Op(action="install", name="bash", nevra="bash-0:5.2-1.x86_64",
                                  file="bash.rpm", size=1),),
    "install without size": (Op(action="install", name="bash", nevra="bash-0:5.2-1.x86_64",
                                file="bash.rpm", sha256=SHA),),
    "install without nevra": (Op(action="install", name="bash", file="bash.rpm", size=1, sha256=SHA),),
    "nevra of another name": (Op(action="install", name="bash", nevra="zsh-0:5.9-1.x86_64", file="zsh.rpm",
                                 size=1, sha256=SHA),),
    "nevra of a longer name": (Op(action="install", name="bash", nevra="bash-doc-0:5.9-1.x86_64",
                                  file="b.rpm", size=1, sha256=SHA),),
    "not a nevra": (Op(action="install", name="bash", nevra="bash", file="bash.rpm", size=1, sha256=SHA),),
    "erase with a file": (Op(action="erase", name="bash", file="bash.rpm"),),
    "erase with a nevra": (Op(action="erase", name="bash", nevra="bash-0:5.2-1.x86_64"),),
    "erase with a size": (Op(action="erase", name="bash", size=0),),
}


@pytest.mark.parametrize("ops", BAD_OPS.values(), ids=BAD_OPS.keys())
def test_check_ops_refuses(ops):
    with pytest.raises(UpdateRefused):
        check_ops(ops)


def test_check_ops_accepts_installs_and_erases():
    check_ops((install("bash"), erase("telnet")))


BAD_DOCS = {
    "unknown field": good_doc(extra=1),
    "unknown op field": good_doc(ops=[{"action": "erase", "name": "telnet", "why": "x"}]),
    "seq 0": good_doc(seq=0),
    "seq negative": good_doc(seq=-1),
    "seq a string": good_doc(seq="1"),
    "group with capitals": good_doc(group="Rack"),
    "group with a slash": good_doc(group="rack/a"),
    "group empty": good_doc(group=""),
    "empty ops": good_doc(ops=[]),
    "unknown action": good_doc(ops=[{"action": "upgrade", "name": "bash"}]),
    "name twice": good_doc(ops=[{"action": "erase", "name": "a"}, {"action": "erase", "name": "a"}]),
    "install without sha256": good_doc(ops=[{"action": "install", "name": "bash", "nevra": "bash-0:5.2-1.x86_64",
                                             "file": "bash.rpm", "size": 1}]),
    "bad sha256": good_doc(ops=[{"action": "install", "name": "bash", "nevra": "bash-0:5.2-1.x86_64",
                                 "file": "bash.rpm", "size": 1, "sha256": "XY" * 32}]),
    "file with a slash": good_doc(ops=[{"action": "install", "name": "bash", "nevra": "bash-0:5.2-1.x86_64",
                                        "file": "../bash.rpm", "size": 1, "sha256": SHA}]),
    "nevra of another name": good_doc(ops=[{"action": "install", "name": "bash", "nevra": "zsh-0:5.9-1.x86_64",
                                            "file": "zsh.rpm", "size": 1, "sha256": SHA}]),
    "erase with a file": good_doc(ops=[{"action": "erase", "name": "bash", "file": "bash.rpm"}]),
    "short signature": good_doc(signature="ab"),
}


@pytest.mark.parametrize("as_json", [False, True], ids=["dict", "json"])
@pytest.mark.parametrize("doc", BAD_DOCS.values(), ids=BAD_DOCS.keys())
def test_parse_update_refuses(doc, as_json):
    with pytest.raises(UpdateRefused):
        parse_update(json.dumps(doc) if as_json else doc)


@pytest.mark.parametrize("data", [b"{", b"", b"not json", b"[1, 2]", b"null", "{\"seq\": 1,}"])
def test_parse_update_refuses_malformed_json(data):
    with pytest.raises(UpdateRefused):
        parse_update(data)


@pytest.mark.parametrize("as_json", [False, True], ids=["dict", "json"])
def test_parse_update_accepts_a_good_one(as_json):
    doc = good_doc(urgent=True)
    got = parse_update(json.dumps(doc).encode() if as_json else doc)
    assert (got.seq, got.group, got.urgent) == (1, "rack-a", True)
    assert got.files == (Op(action="install", name="bash", nevra="bash-0:5.2-1.x86_64",
                            file="bash-5.2-1.x86_64.rpm", size=10, sha256=SHA),)
