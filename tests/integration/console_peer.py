"""A peer of tests/integration/test_console.py, run inside a network namespace (`ip netns exec`).

What it does, by its first argument:
  ask     reads a JSON list of requests on stdin ({method, url, headers, body}) and prints a JSON list of
          [status, headers (lower-case names; Set-Cookie as a list), body text] (http.client: no redirect
          is followed, so a 303 is seen as such).
  browse  URL TOKEN SHOTS_DIR PATH...: headless Chromium (Debian's chromium and chromedriver, driven by
          Selenium; Selenium Manager never runs: the driver's path is given) signs in through the login
          form, then loads each console PATH and prints, for each, what the page shows (figures, table
          rows, install sections, the text of the failure messages), whether an alert is open and how many
          <script> elements the DOM holds, beside the page's data fetched from /v1/PATH with the token;
          a full-page screenshot of each goes to SHOTS_DIR/<name>.png.
Every wait has a timeout; the test bounds the whole run as well.

Reads: its arguments, stdin. Fails with a traceback (the test shows stderr) when the browser cannot start
or a page does not load in time. Prints one JSON document on stdout.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

PAGE_LOAD_TIMEOUT = 60
WAIT = 30
# What the page shows, read from the DOM in one call: the console itself has no script (its CSP allows
# none); WebDriver's script runs through DevTools, outside the page's policy.
EXTRACT = """
const cells = tr => Array.from(tr.querySelectorAll('[data-value]')).map(c => c.getAttribute('data-value'));
const keyed = ['data-image', 'data-configuration', 'data-baseline', 'data-host', 'data-report'];
const figures = {};
for (const el of document.querySelectorAll('[data-figure]')) {
  const name = el.getAttribute('data-figure');
  (figures[name] = figures[name] || []).push({value: el.getAttribute('data-value'), text: el.innerText});
}
const tables = {};
for (const t of document.querySelectorAll('table[id]')) {
  tables[t.id] = Array.from(t.querySelectorAll('tr')).filter(tr => keyed.some(k => tr.hasAttribute(k))).map(tr => {
    const k = keyed.find(k => tr.hasAttribute(k));
    return {attr: k, key: tr.getAttribute(k), values: cells(tr), text: tr.innerText};
  });
}
const installs = Array.from(document.querySelectorAll('section.install')).map(s => ({
  started: s.getAttribute('data-started'), heading: s.querySelector('h2').innerText,
  boot_to_boot: (s.querySelector('[data-figure=boot_to_boot]') || {getAttribute: () => null}).getAttribute('data-value'),
  phases: Array.from(s.querySelectorAll('table.phases tr')).slice(1).map(tr => ({
    name: tr.cells[0].innerText, seconds: tr.cells[2].getAttribute('data-value')})),
  message: (s.querySelector('.message') || {innerText: null}).innerText}));
return {figures: figures, tables: tables, installs: installs, title: document.title,
        h1: (document.querySelector('h1') || {innerText: ''}).innerText,
        svgs: document.querySelectorAll('div.chart svg').length};
"""


def ask(requests: list[dict]) -> list:
    answers = []
    for req in requests:
        url = urlsplit(req["url"])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=WAIT)
        try:
            body = req.get("body")
            conn.request(req["method"], url.path + (f"?{url.query}" if url.query else ""),
                         body=body.encode() if body is not None else None, headers=req.get("headers") or {})
            resp = conn.getresponse()
            headers: dict = {}
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    headers.setdefault("set-cookie", []).append(value)
                else:
                    headers[name.lower()] = value
            answers.append([resp.status, headers, resp.read().decode("utf-8", "replace")])
        finally:
            conn.close()
    return answers


def api(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=WAIT) as resp:
        return json.loads(resp.read())


def driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,1600"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    d.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    d.set_script_timeout(WAIT)
    return d


def sign_in(d, url: str, token: str) -> dict:
    """Open the console unsigned (its login page), type the token, submit: where the browser lands."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d.get(f"{url}/console/cache")
    before = {"title": d.title, "figures": len(d.find_elements(By.CSS_SELECTOR, "[data-figure]"))}
    field = WebDriverWait(d, WAIT).until(ec.presence_of_element_located((By.NAME, "token")))
    field.send_keys(token)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(d, WAIT).until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-figure=used_bytes]")))
    cookies = {c["name"]: {k: c.get(k) for k in ("httpOnly", "sameSite", "path")} for c in d.get_cookies()}
    return {"before": before, "landed": d.current_url, "cookies": cookies}


def alert_open(d) -> str | None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return d.switch_to.alert.text
    except NoAlertPresentException:
        return None


def screenshot(d, path: Path) -> None:
    """The whole page, beyond the window (DevTools), else the window."""
    try:
        size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = d.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
    except Exception:  # an older DevTools: the window is enough
        d.save_screenshot(str(path))


def browse(url: str, token: str, shots: Path, paths: list[str]) -> dict:
    from selenium.webdriver.common.by import By

    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ais-chromium-") as profile:
        d = driver(profile)
        try:
            out = {"login": sign_in(d, url, token), "pages": {}}
            for path in paths:
                d.get(f"{url}/console/{path}")
                page = d.execute_script(EXTRACT)
                page["alert"] = alert_open(d)
                page["scripts"] = len(d.find_elements(By.TAG_NAME, "script"))
                page["messages"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".message, #failures pre")]
                page["url"] = d.current_url
                page["api"] = api(f"{url}/v1/console/{path}", token)
                name = path.replace("/", "-")
                screenshot(d, shots / f"{name}.png")
                out["pages"][path] = page
            return out
        finally:
            d.quit()


def main(argv: list[str]) -> None:
    if argv[0] == "ask":
        print(json.dumps(ask(json.load(sys.stdin))))
    elif argv[0] == "browse":
        url, token, shots, *paths = argv[1:]
        print(json.dumps(browse(url, token, Path(shots), paths)))
    else:
        raise SystemExit(f"usage: {argv[0]}: ask | browse URL TOKEN SHOTS_DIR PATH...")


if __name__ == "__main__":
    main(sys.argv[1:])
