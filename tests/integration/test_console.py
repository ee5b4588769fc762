"""The web console in a real browser: headless Chromium reaches a real `ais serve` over a veth.

Set-up (once): a real `ais rebuild` of three SCDs (web-1, web-2, mail: a lattice of four images),
`ais serve --admin-token-file` inside a network namespace, one real reinstall of mail01 onto a loop
disk from a second namespace (its host page gets a time line), and a "failed" report of web01 whose
message is hostile HTML. Then, from a third namespace (so the connection is not to a loopback address
and the token matters), Debian's chromium driven by Selenium (tests/integration/console_peer.py) signs
in through the login form and loads every page: each figure and table row on the page must equal the
page's data endpoint, the hostile message must be shown as text, no alert may open and the DOM holds
no <script>. Screenshots go to build/console-shots/ (docs/console.md shows them).

Access, over plain HTTP from another namespace: every page and data endpoint answers 401 without the
token, with a wrong Bearer and with a wrong cookie, and the answer names no host, image or SCD of the
site; a server without an admin token answers 403 to a neighbour and 200 on its own 127.0.0.1; the
login form sets its cookie (HttpOnly, SameSite=Strict) for the right token only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.cost import CostModel, save_calibration
from ais.run import run
from aislab.disks import LoopDisk, reinstall_argv, serve_in
from aislab.lines import next_line
from aislab.net import NetLab, ais_command
from aislab.site import subset_descriptors

pytestmark = [pytest.mark.root, pytest.mark.rpm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("console_peer.py")
SHOTS = ROOT / "build" / "console-shots"
SCDS, HOSTS = ["web-1", "web-2", "mail"], ["web01", "web02", "web03", "mail01"]
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "web01": "84e4da20e238c22fa45ed5329158227c"}
ADMIN = "console-admin-token-0123456789abcdef"
HOSTILE = """<script>alert(1)</script><img src=x onerror=alert(2)> "quotes" & 'apostrophes'"""
SERVER, INSTALLER, BROWSER = 0, 1, 2  # the lab's namespaces
PAGES = ["cache", "plan", "hosts", "hosts/mail01", "hosts/web01", "live"]
PATHS = [f"/console/{p}" for p in PAGES] + [f"/v1/console/{p}" for p in PAGES]
TIMEOUT = 240  # a safety net against a hung step, never a moment the test relies on


def peer(lab, i: int, *args: str, stdin: str | None = None, timeout: float = 120):
    """console_peer.py run inside namespace i: its JSON output."""
    proc = run(lab.argv(i, [sys.executable, str(PEER), *args]), input=stdin, timeout=timeout, check=False,
               env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def ask(lab, i: int, requests: list[dict]) -> list:
    """HTTP exchanges from namespace i: [status, headers, body] each."""
    return peer(lab, i, "ask", stdin=json.dumps(requests))


@pytest.fixture(scope="module")
def console(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("console")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", SCDS, HOSTS)
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    cache, history = base / "cache", base / "history.sqlite"
    run(ais_command("rebuild", "--descriptors", str(descriptors), "--repo", str(repo_dir), "--cache", str(cache),
                    "--budget", "96M", "--cost", str(cost), "--history", str(base / "rebuild-history.sqlite")),
        cwd=ROOT, timeout=TIMEOUT)
    token_file = base / "admin-token"
    token_file.write_text(ADMIN + "\n")
    token_file.chmod(0o600)
    with NetLab(3, tag=f"aicn{os.getpid() % 10000}") as lab, open(base / "serve.log", "w") as log, \
            LoopDisk(base / "disk.img", 512) as disk:
        url = serve_in(lab, SERVER, descriptors, repo_dir, cache, history, log, "--admin-token-file", str(token_file))
        installed = run(lab.argv(INSTALLER, reinstall_argv(url, "mail01", TOKENS["mail01"], disk.device,
                                                           base / "state")), timeout=TIMEOUT, check=False)
        assert installed.returncode == 0, installed.stderr[-4000:]
        failed = {"status": "failed", "phase": "install", "message": HOSTILE}
        [(status, _, body)] = ask(lab, INSTALLER, [{
            "method": "POST", "url": f"{url}/v1/hosts/web01/report", "body": json.dumps(failed),
            "headers": {"Authorization": f"Bearer {TOKENS['web01']}", "Content-Type": "application/json"}}])
        assert status == 201, body
        yield {"lab": lab, "url": url, "base": base, "descriptors": descriptors, "cache": cache, "repo": repo_dir,
               "history": history, "log": base / "serve.log"}
    assert "Traceback" not in (base / "serve.log").read_text()


@pytest.fixture(scope="module")
def browsed(console):
    """What Chromium saw of each page, beside each page's data (console_peer.py browse)."""
    return peer(console["lab"], BROWSER, "browse", console["url"], ADMIN, str(SHOTS), *PAGES, timeout=TIMEOUT)


# ------------------------------------------------------------------ the browser


def same(shown: str | None, value) -> bool:
    """A data-value equals the API's figure: numbers as numbers, None as "None"."""
    if value is None or isinstance(value, str):
        return shown == str(value)
    return float(shown) == float(value)


def figures(page: dict) -> dict[str, list[str]]:
    return {name: [f["value"] for f in found] for name, found in page["figures"].items()}


def keys(page: dict, table: str) -> list[str]:
    return [row["key"] for row in page["tables"][table]]


def test_sign_in_through_the_form_sets_a_strict_http_only_cookie(browsed, console):
    login = browsed["login"]
    assert login["before"] == {"title": "AIS · sign in", "figures": 0}  # unsigned: the form, no figure
    assert login["landed"] == f"{console['url']}/console/cache"
    assert login["cookies"]["ais_console"] == {"httpOnly": True, "sameSite": "Strict", "path": "/"}


@pytest.mark.parametrize("page", PAGES)
def test_no_script_runs_and_a_screenshot_is_saved(browsed, page):
    shown = browsed["pages"][page]
    assert shown["alert"] is None and shown["scripts"] == 0
    assert shown["url"].endswith(f"/console/{page}")
    shot = SHOTS / f"{page.replace('/', '-')}.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_cache_page_equals_its_data(browsed):
    page = browsed["pages"]["cache"]
    api = page["api"]
    assert figures(page) == {"generation": [str(api["generation"])], "used_bytes": [str(api["used_bytes"])],
                             "budget_bytes": [str(api["budget_bytes"])], "image_count": [str(len(api["images"]))]}
    assert len(api["images"]) == 4 and api["used_bytes"] == sum(i["stored_bytes"] for i in api["images"])
    assert keys(page, "images") == [i["id"] for i in api["images"]]
    for row, image in zip(page["tables"]["images"], api["images"]):
        assert [int(v) for v in row["values"]] == [image["packages"], image["stored_bytes"], image["fs_bytes"]]
        assert row["text"].split("\t")[-1] == ", ".join(image["serves"])
    assert page["svgs"] == 2


def test_plan_page_equals_its_data(browsed):
    page = browsed["pages"]["plan"]
    plan = page["api"]["plan"]
    expected = {"objective": plan["objective"], "bound": plan["bound"], "gap": plan["gap"],
                "plan_images": len(plan["images"]), "size_bytes": plan["size_bytes"],
                "budget_bytes": plan["budget_bytes"]}
    shown = figures(page)
    assert set(shown) == set(expected)
    for name, value in expected.items():
        assert len(shown[name]) == 1 and same(shown[name][0], value), name
    assert sorted(i["key"] for i in plan["images"]) == ["k0", "k1", "k2", "k3"]  # base, and three above it
    assert keys(page, "configurations") == [c["name"] for c in plan["configurations"]] == sorted(SCDS + ["base"])
    for row, conf in zip(page["tables"]["configurations"], plan["configurations"]):
        assert same(row["values"][0], conf["remainder"]) and same(row["values"][1], conf["predicted_seconds"])
    assert keys(page, "baselines") == sorted(plan["baselines"])
    for row in page["tables"]["baselines"]:
        assert same(row["values"][0], plan["baselines"][row["key"]]["objective"])
    assert page["svgs"] == 3


def test_hosts_page_equals_its_data(browsed):
    page = browsed["pages"]["hosts"]
    api = page["api"]
    shown = figures(page)
    assert shown.pop("host_count") == [str(len(api["hosts"]))]
    assert shown == {f"reports_{status}": [str(n)] for status, n in api["counts"].items()}
    assert api["counts"] == {"ok": 1, "failed": 1}
    assert keys(page, "hosts") == [h["name"] for h in api["hosts"]] == sorted(HOSTS)  # fewer than the cap
    rows = {r["key"]: r["text"] for r in page["tables"]["hosts"]}
    assert "failed" in rows["web01"] and "ok" in rows["mail01"] and "never" in rows["web02"]
    assert keys(page, "failures") == [str(f["id"]) for f in api["failures"]]
    assert [f["message"] for f in api["failures"]] == [HOSTILE]
    assert page["messages"] == [HOSTILE]  # shown as text, character for character


def test_reinstalled_host_page_has_its_time_line(browsed):
    page = browsed["pages"]["hosts/mail01"]
    api = page["api"]
    assert page["h1"] == "mail01" and figures(page)["scd"] == [api["scd"]] == ["mail"]
    assert [i["status"] for i in api["installs"]] == ["installed"]
    assert len(page["installs"]) == len(api["installs"])
    for shown, install in zip(page["installs"], api["installs"]):
        assert same(shown["started"], install["started_at"])
        assert shown["boot_to_boot"] is None and install["boot_to_boot"] is None  # not rebooted (no kexec here)
        assert [p["name"] for p in shown["phases"]] == [p["name"] for p in install["phases"]]
        for p, q in zip(shown["phases"], install["phases"]):
            assert same(p["seconds"], q["seconds"])
    assert {"image", "install", "files"} <= {p["name"] for p in api["installs"][0]["phases"]}
    assert page["svgs"] == 1  # the time line


def test_failed_host_page_shows_the_hostile_message_as_text(browsed):
    page = browsed["pages"]["hosts/web01"]
    api = page["api"]
    assert [(i["status"], i["failed_phase"], i["message"]) for i in api["installs"]] == [("failed", "install", HOSTILE)]
    assert len(page["installs"]) == 1 and page["installs"][0]["message"] == HOSTILE
    assert page["messages"] == [HOSTILE]
    assert page["alert"] is None and page["scripts"] == 0


def test_live_page_equals_its_data(browsed):
    page = browsed["pages"]["live"]
    api = page["api"]
    assert figures(page) == {"installing": [str(len(api["installing"]))]}
    assert keys(page, "live") == [e["host"] for e in api["installing"]]
    assert keys(page, "finished") == [e["host"] for e in api["finished"]]
    # the real reinstall went through the live board: planned, its phases posted, then its ok report
    assert {e["host"]: e["state"] for e in api["finished"]}.get("mail01") == "installed"


# ------------------------------------------------------------------ who may look

SECRETS = re.compile(r"\b(?:" + "|".join(map(re.escape, HOSTS + SCDS)) + r")\b")
NO_ACCESS = {"none": {}, "wrong bearer": {"Authorization": "Bearer " + "x" * len(ADMIN)},
             "wrong cookie": {"Cookie": "ais_console=" + "0" * 64},
             "host token": {"Authorization": f"Bearer {TOKENS['mail01']}"}}


@pytest.fixture(scope="module")
def refused(console):
    """Every path asked with each wrong credential from the browser's namespace."""
    asks = [{"method": "GET", "url": console["url"] + path, "headers": headers}
            for headers in NO_ACCESS.values() for path in PATHS]
    answers = ask(console["lab"], BROWSER, asks)
    return {(how, path): answers[i * len(PATHS) + j] for i, how in enumerate(NO_ACCESS) for j, path in enumerate(PATHS)}


def site_words(console) -> list[str]:
    """What a stranger must not learn: the image ids (and their short forms) and the hosts' names."""
    manifest = manifests.read(Store(console["cache"]))
    return [w for iid in manifest["images"] for w in (iid, iid[:8])]


@pytest.mark.parametrize("how", NO_ACCESS)
@pytest.mark.parametrize("path", PATHS)
def test_without_the_token_every_path_answers_401_and_reveals_nothing(refused, console, how, path):
    status, headers, body = refused[(how, path)]
    assert status == 401
    assert not SECRETS.search(body), body
    assert not any(word in body for word in site_words(console)), body
    assert "set-cookie" not in headers
    if path.startswith("/v1/"):
        assert headers["www-authenticate"] == "Bearer" and json.loads(body)["status"] == 401
    else:
        assert 'name="token"' in body and headers["content-security-policy"].startswith("default-src 'none'")


def test_with_the_token_every_path_answers_200(console):
    answers = ask(console["lab"], BROWSER, [{"method": "GET", "url": console["url"] + path,
                                             "headers": {"Authorization": f"Bearer {ADMIN}"}} for path in PATHS])
    assert [a[0] for a in answers] == [200] * len(PATHS)
    assert all("script-src" not in a[1].get("content-security-policy", "") for a in answers)


def test_login_sets_the_cookie_for_the_right_token_only(console):
    url = console["url"] + "/console/login"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong, right = ask(console["lab"], BROWSER, [
        {"method": "POST", "url": url, "headers": form, "body": "token=" + "y" * len(ADMIN)},
        {"method": "POST", "url": url, "headers": form, "body": f"token={ADMIN}"}])
    assert wrong[0] == 401 and "set-cookie" not in wrong[1] and 'name="token"' in wrong[2]
    assert right[0] == 303 and right[1]["location"] == "/console/cache"
    [cookie] = right[1]["set-cookie"]
    attributes = {a.strip().split("=")[0] for a in cookie.split(";")[1:]}
    assert {"HttpOnly", "SameSite"} <= attributes and "SameSite=Strict" in cookie
    assert ADMIN not in cookie  # an HMAC of the token, not the token
    [(status, _, body)] = ask(console["lab"], BROWSER, [{"method": "GET", "url": console["url"] + "/v1/console/hosts",
                                                         "headers": {"Cookie": cookie.split(";")[0]}}])
    assert status == 200 and [h["name"] for h in json.loads(body)["hosts"]] == sorted(HOSTS)


@pytest.fixture(scope="module")
def localhost_only(console):
    """A second server, without --admin-token-file, on every address of the server's namespace, asked for
    every path from the browser's namespace and from its own on 127.0.0.1: {path: (far, near)} answers."""
    lab = console["lab"]
    argv = [*ais_command("serve"), "--plain-http", "--descriptors", str(console["descriptors"]), "--repo", str(console["repo"]),
            "--cache", str(console["cache"]), "--history", str(console["history"]), "--listen", "0.0.0.0:0",
            "--stream-listen", "0.0.0.0:0", "--advertise", lab.address(SERVER), "--poll", "0.2"]
    log_path = console["base"] / "open.log"
    with open(log_path, "w") as log:
        proc = lab.spawn(SERVER, argv, stderr=log, env={"PYTHONUNBUFFERED": "1"})
        try:
            port = urlsplit(json.loads(next_line(proc.stdout, 30))["listening"]["url"]).port
            far = ask(lab, BROWSER, [{"method": "GET", "url": f"http://{lab.address(SERVER)}:{port}{path}"}
                                     for path in PATHS])
            near = ask(lab, SERVER, [{"method": "GET", "url": f"http://127.0.0.1:{port}{path}"} for path in PATHS])
        finally:
            proc.kill()
            proc.communicate(timeout=10)
    assert "Traceback" not in log_path.read_text()
    return {path: (far[i], near[i]) for i, path in enumerate(PATHS)}


@pytest.mark.parametrize("path", PATHS)
def test_without_an_admin_token_the_console_is_for_localhost_only(localhost_only, console, path):
    (far, _, far_body), (near, _, near_body) = localhost_only[path]
    assert far == 403 and not SECRETS.search(far_body), far_body
    assert not any(word in far_body for word in site_words(console)), far_body
    assert near == 200, near_body
    if "hosts" in path:  # a page of hosts, or of one host, shown to this machine
        assert (path.rsplit("/", 1)[-1] if "hosts/" in path else "mail01") in near_body
