"""Set-ups for tests and benchmarks of the server: small sites, real caches, a real server process.

What it does:
- `subset_descriptors(src, dst, scds, hosts)`: copy a few SCDs (plus the bases
  they build on) and HCDs of the demo descriptors, so a cache builds in seconds;
  `copy_groups` gives such a subset the groups its hosts name (a declared group
  without a host is refused).
- `rebuild_cache(...)`: the real `ais rebuild` (planner + builder + publish).
- `publish_base_cache(...)`: the real builder and publisher, with every
  configuration served from its installation base image plus a remainder (the
  case where the client installs the most RPMs), whatever the planner would pick.
- `ServeProcess`: `ais serve` as a subprocess on ephemeral ports; reads the
  JSON line it prints to learn its URL; stop() (SIGTERM) or kill() (SIGKILL).

Reads: the demo descriptors and the built repository. Fails with what the
cache code raises, or `WorldError` when the server does not come up.
Returns paths, manifests and the running process handle.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ais.errors import WorldError
from ais.run import start
from aislab.lines import next_line
from aislab.net import ais_command

ROOT = Path(__file__).resolve().parents[1]


def subset_descriptors(src: Path, dst: Path, scds: list[str], hosts: list[str]) -> Path:
    """A descriptors tree with only these SCDs (and their bases) and these hosts."""
    from lxml import etree

    src, dst = Path(src), Path(dst)
    wanted, todo = set(), list(scds)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        base = etree.parse(str(src / "scd" / f"{name}.xml")).getroot().get("base")
        if base:
            todo.append(base)
    (dst / "scd").mkdir(parents=True, exist_ok=True)
    (dst / "hcd").mkdir(parents=True, exist_ok=True)
    for name in wanted:
        shutil.copy2(src / "scd" / f"{name}.xml", dst / "scd")
    for name in hosts:
        shutil.copy2(src / "hcd" / f"{name}.xml", dst / "hcd")
    if (src / "files").is_dir():
        shutil.copytree(src / "files", dst / "files", dirs_exist_ok=True)
    copy_groups(src, dst)
    return dst


def copy_groups(src: Path, dst: Path) -> None:
    """dst/groups.xml: the declarations of src/groups.xml that dst's HCDs name (none: no file)."""
    from lxml import etree

    src, dst = Path(src), Path(dst)
    if not (src / "groups.xml").is_file():
        return
    named = {(el.text or "").strip() for hcd in (dst / "hcd").glob("*.xml")
             for el in etree.parse(str(hcd)).getroot().iter("group")}
    tree = etree.parse(str(src / "groups.xml"))
    for group in list(tree.getroot().iter("group")):
        if group.get("name") not in named:
            group.getparent().remove(group)
    if len(tree.getroot()):
        tree.write(str(dst / "groups.xml"), xml_declaration=True, encoding="UTF-8")


def rebuild_cache(descriptors: Path, repo: Path, cache: Path, *, budget: int | None = None,
                  cost: Path | None = None) -> dict:
    """Run the real rebuild; returns the published manifest."""
    from ais.cache import manifest as manifests
    from ais.cache.rebuild import Options, rebuild
    from ais.cache.report import Reporter
    from ais.cache.store import Store

    rebuild(Options(descriptors=Path(descriptors), repo=Path(repo), cache=Path(cache), budget=budget,
                    cost=cost), Reporter(quiet=True))
    return manifests.read(Store(cache))


def publish_base_cache(descriptors: Path, repo: Path, cache: Path, *, cost: Path | None = None) -> dict:
    """Build each configuration's base image and publish a manifest serving every
    configuration from its base image plus the rest as remainder."""
    from ais.cache import manifest as manifests
    from ais.cache.build import build_image
    from ais.cache.store import Store, image_id
    from ais.descriptors import load_site
    from ais.cost import CostModel, cost_to_obj, load_calibration
    from ais.server.plans import predict

    model = load_calibration(cost) if cost else CostModel()
    site = load_site(descriptors, repo)
    store = Store(cache)
    store.ensure()
    previous = manifests.read(store)
    images, confs = {}, {}
    for conf in site.configurations:
        base = site.configuration(conf.base) if conf.kind != "base" else conf
        iid = image_id(base.packages)
        if iid not in images:
            if store.image_path(iid).exists() and iid in previous.get("images", {}):
                images[iid] = previous["images"][iid]
            else:
                images[iid] = build_image(store, list(base.packages), repo, key=f"base-{base.name}")
        base_set = {p.nevra for p in base.packages}
        remainder = [p for p in conf.packages if p.nevra not in base_set]
        confs[conf.name] = {"image": iid, "remainder": sorted(p.nevra for p in remainder),
                            "predicted_seconds": round(predict(model, images[iid]["stored_bytes"], remainder, conf), 6)}
    store.drain()
    plan = lab_plan(images, confs, "every configuration served from its base image (the lab, not the planner)")
    manifests.publish(store, manifests.make(previous=previous, plan_json=plan, images=images, configurations=confs,
                                            cost=cost_to_obj(model)))
    return manifests.read(store)


def lab_plan(images: dict[str, dict], confs: dict[str, dict], note: str) -> dict:
    """A Plan (the manifest's contract) for a cache the lab laid out itself: `images` are
    manifest records by id, `confs` the manifest's configurations (image id or None)."""
    from ais.contracts import Plan, PlanImage, Serving, to_builtins

    keys = {iid: r["key"] for iid, r in images.items()}
    total = sum(c["predicted_seconds"] for c in confs.values())
    return to_builtins(Plan(
        inputs_hash="", budget_bytes=sum(r["stored_bytes"] for r in images.values()),
        images=tuple(PlanImage(key=r["key"], packages=tuple(r["packages"]), size_bytes=r["stored_bytes"])
                     for r in images.values()),
        serve={name: Serving(image=keys[c["image"]] if c["image"] else None, remainder=tuple(c["remainder"]),
                             predicted_seconds=c["predicted_seconds"]) for name, c in confs.items()},
        objective=total, bound=total, gap=0.0, status="lab", solver="none", baselines={}, candidates={},
        warnings=(note,)))


class ServeProcess:
    """`ais serve` in a subprocess on ephemeral loopback ports: plain HTTP (--plain-http), or HTTPS
    with the site's certificate (CACHE/site/tls, `ais site cert`) when `tls`."""

    def __init__(self, descriptors: Path, repo: Path, cache: Path, history: Path, *extra: str,
                 log_path: Path | None = None, timeout: float = 30.0, tls: bool = False):
        argv = [*ais_command("serve"), *([] if tls else ["--plain-http"]), "--descriptors", str(descriptors),
                "--repo", str(repo),
                "--cache", str(cache), "--history", str(history), "--listen", "127.0.0.1:0",
                "--stream-listen", "127.0.0.1:0", "--poll", "0.2", *extra]
        self.log_path = Path(log_path or Path(history).with_suffix(".log"))
        self._log = open(self.log_path, "ab")
        self.proc = start(argv, stderr=self._log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"}, text=False)
        line = next_line(self.proc.stdout, timeout)
        try:
            self.info = json.loads(line)["listening"]
        except (ValueError, KeyError) as err:
            self.kill()
            raise WorldError(f"ais serve did not start: {line!r}; log {self.log_path}:\n{self.log()[-2000:]}") from err
        self.url = self.info["url"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def request(server, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
            timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """One HTTP exchange with a server (anything with `.url`): (status, headers, body); the
    headers are looked up regardless of case, as HTTP says."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def get_json(server, path: str, headers: dict | None = None) -> tuple[int, dict]:
    status, _, body = request(server, "GET", path, headers)
    return status, json.loads(body)


def stored_reports(history: Path, host: str) -> list[tuple[str, dict]]:
    """(status, report) of each report `ais serve` stored for host in the history database, oldest
    first; [] when the database does not exist yet."""
    import sqlite3

    if not Path(history).exists():
        return []
    with sqlite3.connect(history) as db:
        rows = db.execute("SELECT status, report FROM reports WHERE host = ? ORDER BY id", (host,)).fetchall()
    return [(status, json.loads(report)) for status, report in rows]
