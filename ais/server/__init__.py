"""`ais serve`: the control API, package and host-file serving, and the block streamer.

One long-running process (`ais.server.service.Server`) answers clients at boot:
which image and packages make their configuration (`plans`), the RPMs and host
files themselves (`http`, aiohttp's web server, with Range and limits), image headers, and install
reports (`history`, SQLite). It embeds the streamer's `StreamServer` for the
image chunks. The published cache manifest and the descriptors are re-read when
they change (`state`), so a rebuild needs no restart. docs/server.md has the
API and the trust model.
"""
