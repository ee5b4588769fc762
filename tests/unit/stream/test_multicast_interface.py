"""Where a multicast client joins when not told: the local address routing to the server."""

from ais.stream.multicast import interface_towards


def test_loopback_server_gives_loopback():
    assert interface_towards("127.0.0.1") == "127.0.0.1"
