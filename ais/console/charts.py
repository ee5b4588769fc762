"""The console's pictures, drawn on the server as SVG by matplotlib.

Why matplotlib: a page must work on a boot network with no way out (nothing
fetched at run time), in a mail from cron (`ais report`: no JavaScript) and in
an audit years later. Server-side SVG does all three; matplotlib is the most
maintained Python plotting library, draws without a display (its SVG canvas),
and networkx, already a dependency, lays out the lattice for it. Text stays
text (svg.fonttype "none"), escaped by matplotlib's SVG writer, so a host
name such as `<script>` is drawn, never run, and the browser test can read it.

What it does: one function per picture, each returning an `<svg>` string:
  budget_chart(view)         stored bytes of each image, stacked, against the budget  (cache page)
  generations_chart(view)    stored bytes and budget by generation                   (cache page)
  lattice_chart(plan)        the images as a lattice of package sets, and which serves which configuration (plan page)
  predicted_chart(view)      predicted reinstall seconds of each configuration        (plan page)
  objective_chart(view)      the plan's expected reinstall time beside its bound and the baselines (plan page)
  timeline_chart(install)    the phases of one install on a time axis (Kadeploy's chart) (host page)
Figures use the object API (`matplotlib.figure.Figure`), never pyplot's global
state, so the server's threads may draw at once.

Reads: the views' dicts (`ais.console.views`) and the manifest's plan. Fails
on nothing it is given by the views. Returns str.
"""

from __future__ import annotations

import io
import itertools

import matplotlib
import networkx as nx
from matplotlib.figure import Figure

matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ais", "font.size": 9,
                            "axes.spines.top": False, "axes.spines.right": False})

MIB = 1 << 20
MAX_BARS = 60  # configurations drawn one by one; beyond it the slowest are drawn and the rest counted
MAX_LATTICE_CONFIGURATIONS = 40  # beyond it the lattice draws one node per image: "N configurations"
GREY = "#bab0ac"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg"):]


def palette(image_ids) -> dict[str | None, str]:
    """Each published image's colour, the same on every chart (by the sorted ids); packages only is grey."""
    colours: dict[str | None, str] = {iid: PALETTE[i % len(PALETTE)] for i, iid in enumerate(sorted(image_ids))}
    colours[None] = GREY
    return colours


def short(image_id: str | None) -> str:
    return image_id[:10] if image_id else "packages only"


def budget_chart(view: dict, colours: dict) -> str:
    fig = Figure(figsize=(8, 1.6))
    ax = fig.subplots()
    left = 0.0
    for img in view["images"]:
        width = img["stored_bytes"] / MIB
        ax.barh(0, width, left=left, color=colours.get(img["id"], GREY), edgecolor="white")
        ax.text(left + width / 2, 0, f"{img['id'][:8]}\n{width:.1f} MiB", ha="center", va="center", fontsize=7,
                color="white")
        left += width
    if view["budget_bytes"]:
        ax.axvline(view["budget_bytes"] / MIB, color="black", linestyle="--")
        ax.text(view["budget_bytes"] / MIB, 0.45, " budget", va="bottom")
    ax.set_yticks([])
    ax.set_xlabel("MiB stored")
    ax.set_xlim(0, max(left, (view["budget_bytes"] or 0) / MIB) * 1.08 or 1)
    return _svg(fig)


def generations_chart(view: dict) -> str:
    gens = view["generations"]
    fig = Figure(figsize=(8, 2.4))
    ax = fig.subplots()
    if not gens:
        ax.text(0.5, 0.5, "no generation published yet", ha="center", transform=ax.transAxes)
    else:
        xs = [g["generation"] for g in gens]
        stored = [g["stored_bytes"] / MIB for g in gens]
        budgets = [(g["budget_bytes"] or 0) / MIB for g in gens]
        ax.bar(xs, stored, width=0.6, label="stored", color=PALETTE[0])
        ax.plot(xs, budgets, label="budget", linestyle="none", marker="_", markersize=24, markeredgewidth=2,
                color="black")
        ax.set_xlabel("generation")
        ax.set_ylabel("MiB")
        ax.set_ylim(0, max(budgets + stored) * 1.15 or 1)
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        if len(xs) <= 20:
            ax.set_xticks(xs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="lower right")
    return _svg(fig)


def lattice_chart(plan: dict, ids: dict[str, str], colours: dict) -> str:
    """Images ordered by inclusion of their package sets (Hasse diagram), configurations below the
    image that serves them, each edge labelled with what remains for RPM; `ids`: plan key -> image id."""
    graph, labels = _lattice_graph(plan, ids, colours)
    fig = Figure(figsize=(9, 1.6 + 1.3 * (max(nx.get_node_attributes(graph, "layer").values()) + 1)))
    ax = fig.subplots()
    ax.axis("off")
    pos = _spread(graph)
    kinds, fills = nx.get_node_attributes(graph, "kind"), nx.get_node_attributes(graph, "fill")
    for kind, shape in (("root", "s"), ("image", "s"), ("conf", "o")):
        nodes = [n for n in graph if kinds[n] == kind]
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, node_shape=shape, node_color=[fills[n] for n in nodes],
                               node_size=260, ax=ax)
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=False, edge_color="#999999")
    nx.draw_networkx_edge_labels(graph, pos, edge_labels=nx.get_edge_attributes(graph, "label"), font_size=7, ax=ax)
    for node, (x, y) in pos.items():
        if kinds[node] == "conf":
            ax.text(x, y - 0.12, labels[node], ha="center", va="top", fontsize=7)
        else:
            ax.text(x + 0.015, y, labels[node], ha="left", va="center", fontsize=7)
    return _svg(fig)


def _spread(graph: nx.DiGraph) -> dict:
    """Each layer a row, the empty set on top, its nodes spread over the whole width in insertion order."""
    rows: dict[int, list] = {}
    for node, layer in graph.nodes(data="layer"):
        rows.setdefault(layer, []).append(node)
    return {node: ((i + 1) / (len(nodes) + 1), -layer) for layer, nodes in rows.items() for i, node in enumerate(nodes)}


def _lattice_graph(plan: dict, ids: dict[str, str], colours: dict) -> tuple[nx.DiGraph, dict]:
    sets = {i["key"]: frozenset(i["packages"]) for i in plan["images"]}
    graph = nx.DiGraph()
    graph.add_node("", kind="root", fill="#dddddd")
    labels = {"": "packages only"}
    for key, pkgs in sets.items():
        graph.add_node(key, kind="image", fill=colours.get(ids.get(key), GREY))
        labels[key] = f"{key} {(ids.get(key) or '')[:8]}\n{len(pkgs)} packages"
    inclusion = nx.DiGraph((a, b) for a, b in itertools.permutations(sets, 2) if sets[a] < sets[b])
    inclusion.add_nodes_from(sets)
    graph.add_edges_from(nx.transitive_reduction(inclusion).edges)
    for key in sets:
        if graph.in_degree(key) == 0:
            graph.add_edge("", key)
    layer = {"": 0}
    for node in nx.topological_sort(graph):
        for nxt in graph.successors(node):
            layer[nxt] = max(layer.get(nxt, 0), layer[node] + 1)
    confs_layer = max(layer.values()) + 1
    serve = plan["serve"]
    if len(serve) <= MAX_LATTICE_CONFIGURATIONS:
        for name, how in sorted(serve.items(), key=lambda kv: (kv[1]["image"] or "", kv[0])):  # under their image
            node = f"conf:{name}"
            graph.add_node(node, kind="conf", fill=colours.get(ids.get(how["image"]), GREY))
            graph.add_edge(how["image"] or "", node, label=f"+{len(how['remainder'])}")
            labels[node], layer[node] = f"{name}\n{how['predicted_seconds']:.1f} s", confs_layer
    else:
        for image, names in itertools.groupby(sorted(serve, key=lambda n: serve[n]["image"] or ""),
                                              key=lambda n: serve[n]["image"] or ""):
            node = f"confs:{image}"
            count = len(list(names))
            graph.add_node(node, kind="conf", fill=colours.get(ids.get(image), GREY))
            graph.add_edge(image, node)
            labels[node], layer[node] = f"{count} configurations", confs_layer
    nx.set_node_attributes(graph, layer, "layer")
    return graph, labels


def predicted_chart(view: dict, colours: dict) -> str:
    confs = sorted(view["plan"]["configurations"], key=lambda c: -c["predicted_seconds"])
    shown = confs[:MAX_BARS]
    fig = Figure(figsize=(8, 0.6 + 0.22 * len(shown)))
    ax = fig.subplots()
    ax.barh([c["name"] for c in shown][::-1], [c["predicted_seconds"] for c in shown][::-1],
            color=[colours.get(c["image"], GREY) for c in shown][::-1])
    ax.set_xlabel("predicted reinstall seconds")
    if len(confs) > len(shown):
        ax.set_title(f"the {len(shown)} slowest of {len(confs)} configurations", fontsize=9)
    return _svg(fig)


def objective_chart(view: dict) -> str:
    plan = view["plan"]
    bars = [("bound", plan["bound"], True), ("plan", plan["objective"], True)]
    bars += [(name.replace("_", " "), b["objective"], bool(b["fits_budget"]))
             for name, b in sorted(plan["baselines"].items(), key=lambda kv: kv[1]["objective"])]
    fig = Figure(figsize=(8, 0.6 + 0.3 * len(bars)))
    ax = fig.subplots()
    ax.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1],
            color=["#59a14f" if b[0] in ("bound", "plan") else "#bab0ac" for b in bars][::-1],
            hatch=["" if b[2] else "//" for b in bars][::-1])
    ax.set_xlabel("expected reinstall seconds over all hosts (hatched: over the disk budget)")
    return _svg(fig)


def timeline_chart(install: dict) -> str:
    """One bar per phase at its start; a phase of unknown start (older clients) follows the one before."""
    phases = [p for p in install["phases"] if p["seconds"] is not None]
    fig = Figure(figsize=(8, 0.6 + 0.24 * max(len(phases), 1)))
    ax = fig.subplots()
    starts, end = [], 0.0
    for p in phases:
        starts.append(p["start"] if p["start"] is not None else end)
        end = starts[-1] + p["seconds"]
    ax.barh([p["name"] for p in phases][::-1], [p["seconds"] for p in phases][::-1], left=starts[::-1],
            color=["#e15759" if p["name"] == install.get("failed_phase") else "#4e79a7" for p in phases][::-1])
    ax.set_xlabel("seconds from the first phase")
    return _svg(fig)
