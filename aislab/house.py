"""Draw the house: the rooms of ais/ and the import arrows between them, measured from the code.

What it does: reads every module of ais/ with ast (the same reading as
tests/unit/test_architecture.py), counts the imports between rooms (a room is a
package of ais/; the shared modules at the top of ais/ are one room, "shared"),
and writes an SVG whiteboard: the phases left to right in the order data flows,
each arrow labelled with how many imports it stands for, and any arrow that the
architecture test forbids drawn red (there should be none).
Run: `python -m aislab.house docs/architecture.svg` (from the checkout).
What it reads: ais/**/*.py. What it returns: writes the SVG; exit 0.
"""

from __future__ import annotations

import ast
import collections
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
W, H = 940, 470
BOX_W, BOX_H = 150, 62
# room -> (x, y, what it is); the phases in the order data flows, shared at the bottom
LAYOUT = {
    "descriptors": (20, 110, "XML -> configurations"),
    "repo": (20, 240, "repodata, libsolv"),
    "planner": (215, 110, "sets + costs -> plan"),
    "calibrate": (215, 240, "measures -> cost model"),
    "cache": (410, 110, "plan -> images"),
    "server": (605, 110, "ais serve"),
    "stream": (605, 240, "format, unicast, multicast"),
    "client": (790, 175, "image -> disk"),
    "cli": (410, 20, "ais: one entry point"),
    "shared": (20, 380, "errors run files sizes faults model contracts cost rpmenv"),
}


def room_of(module: str, shared: set[str]) -> str | None:
    parts = module.split(".")
    if parts[0] != "ais" or len(parts) < 2:
        return None
    return "shared" if parts[1] in shared else parts[1]


def arrows(root: Path = ROOT) -> collections.Counter:
    """(from room, to room) -> number of import statements, over ais/."""
    shared = {p.stem for p in (root / "ais").glob("*.py")} - {"__init__", "cli"}
    counts: collections.Counter = collections.Counter()
    for path in sorted((root / "ais").rglob("*.py")):
        here = room_of(".".join(path.relative_to(root).with_suffix("").parts), shared)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                there = room_of(name, shared)
                if there and there != here:
                    counts[(here, there)] += 1
    return counts


def _anchor(room: str, toward: str) -> tuple[float, float]:
    """The point on room's box edge facing the other room's centre."""
    x, y, _ = LAYOUT[room]
    w = W - 40 if room == "shared" else BOX_W
    cx, cy = x + w / 2, y + BOX_H / 2
    tx, ty = LAYOUT[toward][0] + BOX_W / 2, LAYOUT[toward][1] + BOX_H / 2
    if room == "shared":  # straight down from the other room, rooms of the lower row a little right
        tx += 30 if LAYOUT[toward][1] > 200 else -30
        return min(max(tx, x + 10), x + w - 10), y
    dx, dy = tx - cx, ty - cy
    scale = min((w / 2) / abs(dx) if dx else float("inf"), (BOX_H / 2) / abs(dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def svg(counts: collections.Counter, forbidden: set[tuple[str, str]]) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
           '<defs><marker id="a" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
           '<path d="M0,0 L10,4 L0,8 z" fill="#555"/></marker>'
           '<marker id="r" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
           '<path d="M0,0 L10,4 L0,8 z" fill="#c00"/></marker></defs>',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           '<text x="20" y="455" font-size="12" fill="#333">arrow: imports (count); data flows left to right; '
           'red: an arrow that must never exist (tests/unit/test_architecture.py)</text>']
    for (src, dst), n in sorted(counts.items()):
        if src not in LAYOUT or dst not in LAYOUT:
            continue
        (x1, y1), (x2, y2) = _anchor(src, dst), _anchor(dst, src)
        bad = (src, dst) in forbidden
        colour, marker = ("#c00", "r") if bad else ("#555", "a")
        out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
                   f'stroke-width="{1.2 + min(n, 20) / 8:.1f}" marker-end="url(#{marker})"/>')
        out.append(f'<text x="{(x1 + x2) / 2 + 4:.0f}" y="{(y1 + y2) / 2 - 3:.0f}" font-size="10" '
                   f'fill="{colour}">{n}</text>')
    for room, (x, y, what) in LAYOUT.items():
        w = W - 40 if room == "shared" else BOX_W
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8" fill="#eef3fb" stroke="#345"/>')
        out.append(f'<text x="{x + w / 2}" y="{y + 25}" font-size="15" font-weight="bold" text-anchor="middle">'
                   f'{escape(room)}</text>')
        out.append(f'<text x="{x + w / 2}" y="{y + 45}" font-size="11" text-anchor="middle">{escape(what)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def forbidden_pairs() -> set[tuple[str, str]]:
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_architecture import NEVER

    return {(a, b) for a, never in NEVER.items() for b in never}


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/architecture.svg")
    out.write_text(svg(arrows(), forbidden_pairs()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
