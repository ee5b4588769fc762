"""The agent's pure helpers (ais.agent.install): what a transaction re-installs after a power cut."""

from ais.agent.install import _cut_short


def test_a_name_held_twice_is_installed_again_at_its_target():
    installed = {"upd-01-0:2.0-1.noarch", "upd-02-0:1.0-1.noarch", "upd-02-0:2.0-1.noarch"}
    target = {"upd-01": "upd-01-0:2.0-1.noarch", "upd-02": "upd-02-0:2.0-1.noarch"}
    assert _cut_short(target, installed) == ["upd-02-0:2.0-1.noarch"]


def test_nothing_when_every_name_is_held_once_or_erased():
    installed = {"upd-01-0:1.0-1.noarch", "upd-02-0:1.0-1.noarch", "upd-02-0:2.0-1.noarch"}
    assert _cut_short({"upd-01": "upd-01-0:2.0-1.noarch", "upd-02": None}, installed) == []
