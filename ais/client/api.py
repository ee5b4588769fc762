"""Talking to `ais serve`: the plan, downloads checked against sha256, the report.

What it does: `Api(server, token, site_key=HEX)` asks for a host's plan
(GET /v1/hosts/<name-or-mac>/plan, with a fresh `X-AIS-Nonce`; with a pinned
site key the answer's `X-AIS-Signature` must be the site key's over that
nonce and the exact body, checked before anything is decoded; without one a
loud warning says the plan is not verified; over https:// with `site_ca`, a TLS context
that trusts that CA only: ais.siteca, whose refusals are final, never retried), joins an image's chain (POST
/v1/hosts/<name>/chain, for `ais.stream.chain`), downloads a URL of the plan into a file
(resuming with Range after a dropped connection) and checks its sha256 and
size BEFORE the file is used, reads an RPM's header only (`rpm_header`: Range requests up
to the end of its header, for the signature check before anything is written), fetches an
image's .torrent and joins its BitTorrent swarm (`torrent`, `swarm`: for ais.stream.swarm), fetches an RPM's .torrent (`package_torrent`:
for ais.stream.rpmswarm), and posts the install report. Every request is
retried a bounded number of times with exponential back-off when the server
cannot be reached or the connection drops; an answer from the server (a 4xx
with its JSON message) is final and never retried, with one exception: a plan
request the server's reboot window refuses (503 with Retry-After) is asked
again after that many seconds (at most `MAX_WINDOW_WAIT`, at least 1), saying
so on the console each time, until `patience` seconds have gone by.

Reads: HTTP answers (the plan's schema is ais.contracts.HostPlan, checked here). Fails with `ClientError`:
server unreachable after the retries ("cannot reach the AIS server at ...
after N attempts"), an error answer (the server's own message, e.g.
"unknown host nosuch01: no HCD names it"), a reboot window still full when
the patience runs out, a digest or size mismatch (the
file is deleted), a plan that is not a plan, a plan unsigned or wrongly
signed when a site key is pinned (signed by another key, replayed from
another request, changed on the way). Returns the plan dict, nothing
for downloads, the server's answer for the report.

`progress(host, phase, done, total)` posts a "progress" report for the server's
live board: one try with a short timeout (2 s), never retried (the caller,
ais.client.notify, treats it as best effort).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from ais.contracts import HostPlan, decode, to_builtins
from ais.errors import ClientError, UsageError
from ais.files import file_sha256
from ais.siteca import client_context, refusal
from ais.sitekey import NONCE_HEADER, SIGNATURE_HEADER, SIGNER_HEADER, new_nonce, verify_plan

log = logging.getLogger("ais.client.api")
HEADER_PROBE = 64 << 10  # bytes asked for at once when reading an RPM's header
MAX_WINDOW_WAIT = 60  # seconds: the longest Retry-After the client honours as given


class ServerAnswer(ClientError):
    """The server answered with an error status; its message is in the text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Api:
    def __init__(self, server: str, token: str | None = None, *, retries: int = 5, retry_delay: float = 0.5,
                 timeout: float = 30.0, patience: float = 3600.0, site_key: str | None = None,
                 site_ca: str | Path | None = None):
        url = urlsplit(server if "://" in server else f"http://{server}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ClientError(f"server must be https://HOST[:PORT] or http://HOST[:PORT], not {server!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        self.server = f"{url.scheme}://{url.hostname}:{port}"
        self.host, self.port = url.hostname, port
        self.site_ca, self.tls = site_ca, None
        if url.scheme == "https":
            if site_ca is None:
                raise UsageError(f"{self.server}: HTTPS needs the site CA to check the server by (--site-ca FILE, "
                                 "the site's CACHE/site/ca.pem)")
            self.tls = client_context(site_ca)
        elif site_ca is not None:
            raise ClientError(f"refusing plain {self.server}: the site CA is pinned ({site_ca}), so the server "
                              "must be reached over https://; nothing was written")
        self.token = token
        self.retries, self.retry_delay, self.timeout = max(1, retries), retry_delay, timeout
        self.patience = patience  # seconds a plan request waits for a place in the server's reboot window
        self.site_key = site_key  # the pinned site public key (hex): plans must be signed by it

    # ------------------------------------------------------------ plumbing

    def _headers(self, auth: bool) -> dict:
        headers = {"User-Agent": "ais-client/1"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _retrying(self, what: str, attempt_once):
        delay = self.retry_delay
        last: Exception | None = None
        for attempt in range(1, self.retries + 1):
            try:
                return attempt_once()
            except (OSError, http.client.HTTPException) as err:
                if isinstance(err, ssl.SSLError) and not isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    # another CA, expired, another name, not TLS at all: final, never retried
                    raise ClientError(refusal(err, self.server, self.site_ca)) from err
                last = err
                if attempt < self.retries:
                    log.warning("%s: %s (attempt %d of %d, again in %.1fs)", what, err, attempt, self.retries, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        raise ClientError(f"cannot reach the AIS server at {self.server} after {self.retries} attempts "
                          f"({what}): {last}")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _exchange(self, method: str, path: str, *, auth: bool, body: bytes | None = None,
                  headers: dict | None = None, timeout: float | None = None) -> tuple[int, dict, bytes]:
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, path, body=body, headers={**self._headers(auth), **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def _waiting_turn(self, what: str, exchange) -> tuple[int, dict, bytes]:
        """exchange() (with _retrying), asked again while the server's reboot window is full (503 with
        Retry-After), sleeping what the server says between attempts, for up to `patience` seconds."""
        deadline = time.monotonic() + self.patience
        while True:
            status, headers, body = self._retrying(what, exchange)
            wait = window_wait(status, headers)
            if wait is None:
                return status, headers, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError(f"the server's reboot window stayed full for {self.patience:g} s "
                                  f"(--window-patience): {self._error(status, body, what)}")
            wait = min(wait, max(left, 1.0))
            log.warning("the server's reboot window is full: waiting %.0f s (%s)", wait, _message(body))
            time.sleep(wait)

    @staticmethod
    def _error(status: int, body: bytes, what: str) -> ServerAnswer:
        return ServerAnswer(status, f"the server refused {what} (HTTP {status}): {_message(body)}")

    # ------------------------------------------------------------ calls

    def plan(self, host: str) -> dict:
        """The host's plan; with a pinned site key, its signature over this request's fresh nonce and
        the exact body is checked before the body is decoded (ais.sitekey.verify_plan)."""
        what = f"the plan of {host}"
        nonce = new_nonce()
        status, headers, body = self._waiting_turn(what, lambda: self._exchange(
            "GET", f"/v1/hosts/{quote(host, safe=':')}/plan", auth=True, headers={NONCE_HEADER: nonce}))
        if status != 200:
            raise self._error(status, body, what)
        if self.site_key:
            verify_plan(self.site_key, nonce, body, headers.get(SIGNATURE_HEADER.lower()),
                        signer=headers.get(SIGNER_HEADER.lower()), answered=headers.get(NONCE_HEADER.lower()),
                        what=f"the plan the server sent for {host}")
        else:
            log.warning("WARNING: the plan is not verified: no site key pinned (--site-key, or "
                        "/etc/ais/site-key.pub in the boot environment)")
        return to_builtins(decode(body, HostPlan, f"the plan the server sent for {host}", ClientError,
                                  "is the server an AIS server of this version?"))

    def rpm_header(self, url: str) -> bytes:
        """An RPM's first bytes, up to the end of its header (ais.rpmenv.header_length), by Range: what
        its header signature covers, without the payload."""
        data = b""
        while (need := self._header_need(url, data)) > len(data):
            want = f"bytes={len(data)}-{max(need, len(data) + HEADER_PROBE) - 1}"
            status, _, body = self._retrying(f"the header of {url}", lambda: self._exchange(
                "GET", url, auth=False, headers={"Range": want}))
            if status not in (200, 206):
                raise self._error(status, body, url)
            data = body if status == 200 else data + body  # 200: the server sent it all
            if not body:
                break
        return data

    @staticmethod
    def _header_need(url: str, data: bytes) -> int:
        from ais.rpmenv import header_length

        try:
            length = header_length(data)
        except ValueError as err:
            raise ClientError(f"{url}: {err}; refusing it before anything is written") from err
        return len(data) + HEADER_PROBE if length is None else length

    def download(self, url: str, dest: Path, *, sha256: str, size: int | None = None, auth: bool = False) -> None:
        """Fetch url into dest; resume with Range after a drop; check sha256 before returning."""
        dest = Path(dest)
        dest.unlink(missing_ok=True)
        self._retrying(f"downloading {url}", lambda: self._fetch_into(url, dest, sha256, auth))
        digest = file_sha256(dest)
        if digest != sha256 or (size is not None and dest.stat().st_size != size):
            dest.unlink(missing_ok=True)
            raise ClientError(f"{url}: sha256 {digest[:16]}... does not match the plan's {sha256[:16]}...; "
                              "refusing to use it (tampered or corrupted)")

    def _fetch_into(self, url: str, dest: Path, sha256: str, auth: bool) -> None:
        """One attempt: stream the body to dest (appending after a Range answer)."""
        have = dest.stat().st_size if dest.exists() else 0
        extra = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}
        conn = self._connection(self.timeout)
        try:
            conn.request("GET", url, headers={**self._headers(auth), **extra})
            resp = conn.getresponse()
            if resp.status not in (200, 206) or (resp.status == 206 and not have):
                raise self._error(resp.status, resp.read(), url)
            with open(dest, "ab" if resp.status == 206 else "wb") as f:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    f.write(block)
            if resp.length:  # the server closed before Content-Length bytes
                raise http.client.IncompleteRead(b"", resp.length)
        finally:
            conn.close()

    def chain(self, host: str, request: dict) -> dict:
        """POST /v1/hosts/<host>/chain (ais.server.chain): join an image's chain, report a lost
        upstream, or leave; the answer {"upstream", "key", "position", "downstream"}."""
        what = f"the chain request of {host}"
        answer = self._post_json(f"/v1/hosts/{quote(host)}/chain", request, what, 200)
        try:
            obj = json.loads(answer)
        except ValueError as err:
            raise ClientError(f"the server's answer to {what} is not JSON: {answer[:100]!r}") from err
        if not isinstance(obj, dict):
            raise ClientError(f"the server's answer to {what} is not a JSON object")
        return obj

    def torrent(self, image_id: str) -> bytes:
        """The image's .torrent (GET /v1/images/<id>/torrent; this host's token)."""
        what = f"the torrent of image {image_id[:12]}"
        status, _, body = self._retrying(what, lambda: self._exchange(
            "GET", f"/v1/images/{quote(image_id)}/torrent", auth=True))
        if status != 200:
            raise self._error(status, body, what)
        return body

    def package_torrent(self, url: str) -> tuple[bytes, int]:
        """The .torrent of the plan's package at url (GET <url>/torrent; this host's token) and this
        host's rank among those asking for it (X-AIS-Web-Seed-Rank; ais.server.rpmtorrents)."""
        what = f"the torrent of {url.rsplit('/', 1)[-1]}"
        status, headers, body = self._retrying(what, lambda: self._exchange("GET", f"{url}/torrent", auth=True))
        if status != 200:
            raise self._error(status, body, what)
        rank = headers.get("x-ais-web-seed-rank", "0")
        return body, int(rank) if rank.isascii() and rank.isdigit() and len(rank) < 6 else 0

    def swarm(self, host: str, request: dict) -> dict:
        """Join image's swarm: POST {"image", "listen", "done"} to /v1/hosts/<host>/swarm; returns
        {"peers": ["IP:PORT", ...], "seed": URL, "all_done": bool}, checked."""
        what = f"the swarm request of {host}"
        return swarm_answer(self._post_json(f"/v1/hosts/{quote(host)}/swarm", request, what, 200), what)

    def report(self, host: str, report: dict) -> dict:
        what = f"the report of {host}"
        return json.loads(self._post_json(f"/v1/hosts/{quote(host)}/report", report, what, 201))

    def progress(self, host: str, phase: str, done: int | None = None, total: int | None = None, *,
                 timeout: float = 2.0) -> None:
        """Post a "progress" report (the server's live board): ONE try within `timeout` seconds, never
        retried; a refusal is a ServerAnswer, no answer the OSError or HTTPException as it came."""
        body = json.dumps({"status": "progress", "phase": phase, "done": done, "total": total}).encode()
        status, _, answer = self._exchange("POST", f"/v1/hosts/{quote(host)}/report", auth=True, body=body,
                                           headers={"Content-Type": "application/json"}, timeout=timeout)
        if status != 202:
            raise self._error(status, answer, f"the progress report of {host}")

    def _post_json(self, path: str, obj: dict, what: str, expected: int) -> bytes:
        """POST obj as JSON with this host's token (retried as every request); the answer's body, or
        the server's refusal as a ClientError."""
        body = json.dumps(obj, sort_keys=True).encode()
        status, _, answer = self._retrying(what, lambda: self._exchange(
            "POST", path, auth=True, body=body, headers={"Content-Type": "application/json"}))
        if status != expected:
            raise self._error(status, answer, what)
        return answer


def window_wait(status: int, headers: dict) -> float | None:
    """Seconds to wait before asking again when the answer is the reboot window's 503 (Retry-After in
    whole seconds, kept within 1..MAX_WINDOW_WAIT: never a busy loop); None for any other answer."""
    after = headers.get("retry-after", "").strip()
    if status != 503 or not (after.isascii() and after.isdigit()):
        return None
    return float(min(max(int(after[:6]), 1), MAX_WINDOW_WAIT))


def swarm_answer(body: bytes, what: str) -> dict:
    """The server's answer to a swarm request, checked: {"peers": [str], "seed": str, "all_done": bool}."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        obj = None
    if not (isinstance(obj, dict) and isinstance(obj.get("peers"), list) and all(isinstance(p, str) for p in obj["peers"])
            and isinstance(obj.get("seed"), str) and isinstance(obj.get("all_done"), bool)):
        raise ClientError(f"{what}: the server's answer is not a swarm answer: {body[:200]!r}")
    return {"peers": obj["peers"], "seed": obj["seed"], "all_done": obj["all_done"]}


def _message(body: bytes) -> str:
    """The error message of a JSON error body, else the body's start."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return body[:200].decode("utf-8", "replace")
