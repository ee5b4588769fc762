"""A server that is not AIS: it answers every GET with a canned body and headers.

For the tests of what a client does with a hostile or replaying server (a plan nested 100,000 deep,
a captured plan and its signature replayed to another request, a plan signed over the request's
nonce by another key; over TLS with a certificate the test chose: expired, another CA's). Runs on
loopback in a thread.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from typing import Callable


class CannedServer(http.server.ThreadingHTTPServer):
    """Answers every GET with `body` and `headers` (Content-Length added), or with what `answer` makes of
    the request's headers: (body, headers). `url` is where it listens."""

    def __init__(self, body: bytes = b"", headers: dict | None = None, *,
                 answer: Callable[[dict], tuple[bytes, dict]] | None = None, tls: ssl.SSLContext | None = None):
        fixed = (body, {"Content-Type": "application/json"} if headers is None else headers)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data, canned = answer(self.headers) if answer is not None else fixed
                self.send_response(200)
                for name, value in canned.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "https" if tls else "http"
        if tls is not None:  # every connection's handshake with this context (a certificate the test chose)
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
