"""A stream server stopped before it started (`ais serve` giving up on a later step: the API's port in
use, a TLS certificate refused) closes at once; it used to wait forever in socketserver's shutdown()
for a serve loop that never ran."""

import socket
import threading

from ais.stream.unicast import UnicastServer


def test_stop_before_start_returns_and_frees_the_port(tmp_path):
    server = UnicastServer(tmp_path)
    port = server.address[1]
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=10)
    assert not stopper.is_alive(), "stop() before start() hung"
    socket.create_server(("127.0.0.1", port)).close()  # the port is free again
