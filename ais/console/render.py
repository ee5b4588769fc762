"""One page of the console from its sources: the view (data) and the page (HTML with its charts).

What it does: `Sources` gathers what the pages read (the published manifest,
the generations log, the site, the history database, the live board's
snapshot); `view(page, sources, host)` is a page's data (what the data
endpoints send) and `html(pages, page, sources, host, memo)` the page itself;
`report_html(sources)` is `ais report`'s file, from the same views, charts and
templates. Charts of the cache and the plan change only with the generation,
so `ChartMemo` keeps them per generation (a page of a large plan draws its
lattice once, not at every look).

Reads: `Sources`. Fails with `KeyError` for an unknown page or host (the
route answers 404) and what the history database raises (`WorldError`).
Returns dicts and str.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ais.console import charts
from ais.console.pages import Pages
from ais.console.queries import HistoryReader
from ais.console.views import cache_view, host_view, hosts_view, live_view, plan_view, published_ids
from ais.model import Site



@dataclass
class Sources:
    manifest: dict
    generations: list[dict]
    site: Site | None
    reader: HistoryReader
    live: list[dict] = field(default_factory=list)

    @property
    def generation(self) -> int:
        return int(self.manifest.get("generation") or 0)


class ChartMemo:
    """The charts of one generation, drawn once; a new generation forgets the old."""

    def __init__(self):
        self._lock = threading.Lock()
        self._generation, self._charts = None, {}

    def get(self, generation: int, name: str, draw) -> str:
        with self._lock:
            if generation != self._generation:
                self._generation, self._charts = generation, {}
            if name in self._charts:
                return self._charts[name]
        svg = draw()
        with self._lock:
            if generation == self._generation:
                self._charts[name] = svg
        return svg


def view(page: str, sources: Sources, host: str | None = None) -> dict:
    if page == "cache":
        return cache_view(sources.manifest, sources.generations)
    if page == "plan":
        return plan_view(sources.manifest)
    if page == "hosts":
        return hosts_view(sources.site, sources.reader, sources.live)
    if page == "host":
        return host_view(sources.site, sources.reader, host or "", sources.live)
    if page == "live":
        return live_view(sources.live, time.time())
    raise KeyError(page)


def page_charts(page: str, data: dict, sources: Sources, memo: ChartMemo | None = None) -> dict[str, str]:
    memo = memo or ChartMemo()
    gen = sources.generation
    colours = charts.palette(sources.manifest.get("images", {}))
    if page == "cache":
        return {"budget": memo.get(gen, "budget", lambda: charts.budget_chart(data, colours)),
                "generations": memo.get(gen, "generations", lambda: charts.generations_chart(data))}
    if page == "plan" and data["plan"]:
        plan = sources.manifest["plan"]
        return {"lattice": memo.get(gen, "lattice", lambda: charts.lattice_chart(plan, published_ids(sources.manifest), colours)),
                "objective": memo.get(gen, "objective", lambda: charts.objective_chart(data)),
                "predicted": memo.get(gen, "predicted", lambda: charts.predicted_chart(data, colours))}
    if page == "host" and data["installs"]:
        return {"timeline": charts.timeline_chart(data["installs"][0])}
    return {}


def html(pages: Pages, page: str, sources: Sources, host: str | None = None, memo: ChartMemo | None = None) -> str:
    data = view(page, sources, host)
    return pages.page(page, data, page_charts(page, data, sources, memo), sources.generation)


def report_html(sources: Sources) -> str:
    views = {page: view(page, sources) for page in ("cache", "plan", "hosts")}
    drawn = {page: page_charts(page, views[page], sources) for page in ("cache", "plan")}
    return Pages(base="#").report(views, drawn, sources.generation)
