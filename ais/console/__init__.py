"""The web console and `ais report`: what the cache holds, the plan, the hosts and the reinstalls now.

Modules: queries (read-only questions to the history database), views (each
page's data), charts (matplotlib SVG), pages (Jinja2 templates), render (a
page from its sources), commands (`ais report`). `ais serve` answers the
console's paths through ais.server.console_routes. docs/console.md shows it.
"""
