"""Which transport a host's plan names: its HCD's, else the server's default; multicast only where
the server multicasts. And on the client: a transport asked for on the machine wins over the plan's."""

import pytest

from ais.client.steps import chosen_transport
from ais.model import Host
from ais.server.plans import Endpoints, host_transport

MCAST = Endpoints("10.0.0.1:8471", "239.255.1.1:5000", transport="unicast")
NO_MCAST = Endpoints("10.0.0.1:8471", None, transport="unicast")


def host(transport=None) -> Host:
    return Host("web01", ("52:54:00:00:00:01",), "web", 1.0, (), "tok" * 6, "hcd/web01.xml", transport)


# (HCD transport, server endpoints, plan transport, words in the note or None)
CASES = [
    (None, NO_MCAST, "unicast", None),
    (None, Endpoints("10.0.0.1:8471", None, transport="chain"), "chain", None),
    ("bittorrent", NO_MCAST, "bittorrent", None),
    ("chain", Endpoints("10.0.0.1:8471", None, transport="bittorrent"), "chain", None),
    ("multicast", MCAST, "multicast", None),
    ("multicast", NO_MCAST, "unicast", "hcd/web01.xml asks for multicast; this server has no --multicast"),
    ("unicast", Endpoints("10.0.0.1:8471", "239.255.1.1:5000", transport="multicast"), "unicast", None),
]


@pytest.mark.parametrize("asked, endpoints, chosen, note", CASES)
def test_plan_transport(asked, endpoints, chosen, note):
    answer = host_transport(host(asked), endpoints)
    assert answer["transport"] == chosen
    assert answer["transport_note"] == note


@pytest.mark.parametrize("asked, plan, chosen", [
    (None, "chain", "chain"),
    ("unicast", "bittorrent", "unicast"),
    ("bittorrent", "unicast", "bittorrent"),
])
def test_the_machine_overrides_the_plan(asked, plan, chosen, capsys):
    assert chosen_transport(asked, {"transport": plan, "transport_note": None}) == chosen
    assert f"transport {chosen}" in capsys.readouterr().err
