"""A server that is not AIS: it answers every GET with a canned body and headers, every POST with a status.

For the tests of what a client does with a hostile or replaying server (a plan nested 100,000 deep,
a captured plan and its signature replayed to another request, a plan signed over the request's
nonce by another key; over TLS with a certificate the test chose: expired, another CA's), and of
what the installed system's first-boot report sends (over TLS when given a server context). Runs on loopback in a thread.
"""

from __future__ import annotations

import http.server
import ssl
import sys
import threading
from typing import Callable


class CannedServer(http.server.ThreadingHTTPServer):
    """Answers every GET with `body` and `headers` (Content-Length added), or with what `answer` makes of
    the request's headers: (body, headers). Every POST is kept in `posted` as (path, headers, body)
    and answered with `post_status` and `post_body` (JSON). With `tls` (a server-side SSLContext) it
    speaks HTTPS. `url` is where it listens."""

    def __init__(self, body: bytes = b"", headers: dict | None = None, *,
                 answer: Callable[[dict], tuple[bytes, dict]] | None = None,
                 tls: ssl.SSLContext | None = None, post_status: int = 201, post_body: bytes = b"{}"):
        fixed = (body, {"Content-Type": "application/json"} if headers is None else headers)
        self.posted: list[tuple[str, dict, bytes]] = []
        posted = self.posted

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, data: bytes, canned: dict) -> None:
                self.send_response(status)
                for name, value in canned.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                data, canned = answer(self.headers) if answer is not None else fixed
                self._send(200, data, canned)

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posted.append((self.path, dict(self.headers), data))
                self._send(post_status, post_body, {"Content-Type": "application/json"})

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = tls
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake in the request's thread, not here
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)
        # else a client that refused the certificate, or went away: its test says what it saw

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
