"""The console's HTML: Jinja2 templates (ais/console/templates) over the views, with their charts.

What it does: `Pages(base)` renders each page of the console (`page(name,
view, charts)`), the login page, and `report(views, charts)`, the static
file of `ais report` (cache, plan and hosts on one page, no links out, no
refresh). Jinja2 autoescapes everything a view holds, so a host name,
message or package name with HTML, script or quote characters is shown as
text; only the SVG charts, written by matplotlib's escaping SVG writer, are
inserted as markup. The live page refreshes itself every few seconds
(a meta refresh: no script is needed to watch reinstalls move).

Reads: views (`ais.console.views`) and SVG strings (`ais.console.charts`).
Fails on nothing a view holds. Returns str.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

NAV = (("cache", "Cache"), ("plan", "Plan"), ("hosts", "Hosts"), ("live", "Live"))
LIVE_REFRESH_SECONDS = 3
HOSTS_SHOWN = 2000  # rows of the hosts table; the data endpoint has them all


def size(value) -> str:
    if value is None:
        return "none"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def seconds(value) -> str:
    return "" if value is None else f"{float(value):.2f} s"


def when(stamp) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(float(stamp), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("ais.console", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=size, seconds=seconds, when=when)
    return env


class Pages:
    """Renders pages whose links start with `base` (the console's path, ending in /)."""

    def __init__(self, base: str = "/console/"):
        self.base = base
        self.env = _environment()

    def _render(self, template: str, **values) -> str:
        values.setdefault("nav", NAV)
        values.setdefault("link", lambda path: self.base + path)
        values.setdefault("limit", HOSTS_SHOWN)
        return self.env.get_template(template).render(base=self.base, **values)

    def page(self, name: str, view: dict, charts: dict[str, str], generation: int) -> str:
        title = view.get("name", dict(NAV).get(name, name))
        return self._render(f"{name}.html", page=name if name != "host" else "hosts", title=title, v=view,
                            charts={k: Markup(v) for k, v in charts.items()}, generation=generation,
                            refresh=LIVE_REFRESH_SECONDS if name == "live" else None)

    def login(self, why: str, *, form: bool) -> str:
        return self._render("login.html", page="", title="sign in", why=why, form=form, generation="?", nav=())

    def report(self, views: dict[str, dict], charts: dict[str, dict[str, str]], generation: int) -> str:
        marked = {page: {k: Markup(v) for k, v in c.items()} for page, c in charts.items()}
        written = datetime.fromtimestamp(time.time(), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return self._render("report.html", page="", title="report", views=views, charts=marked, nav=(),
                            link=lambda path: "#hosts", generation=generation, written=written)
