"""What the server serves: the published manifest and the descriptors, swapped atomically.

What it does: `StateHolder.current()` returns the `Snapshot` to answer one
request with: the site (`ais.descriptors.load_site`), the published cache
manifest (`ais.cache.manifest.read`) and lookup tables (hosts by name and MAC,
packages by file name and NEVRA). Each call stats manifest.json (cheap); the
descriptors and the repository index are stat'ed at most once per
`poll_seconds`. When anything changed, one thread loads a new snapshot while
the others keep answering from the old one, then the reference is replaced in
one assignment: a request sees the old state or the new one, never a mix.

Reads: the descriptors directory, the repository, cache/manifest.json.
When the cache has a site key (CACHE/site/, `ais site init`), the manifest must
be signed by it (`ais.sitekey.verify_manifest`): one that is not is refused like
a broken manifest; the snapshot carries the private key, which signs plans.
When the cache has an RPM key (CACHE/site/rpm-key.asc, `ais.rpmkey`), the snapshot
carries its armored public half, which every plan carries (read with the manifest:
a rotated RPM key is served from the next reload on, i.e. after `ais rebuild`).

Fails: the first load raises what loading raises (`DescriptorError`,
`BuildError` for an unreadable, unsigned or wrongly signed manifest), so `ais
serve` refuses to start on a broken site; later a broken reload is logged and
the last good snapshot keeps serving (a half-edited descriptor never takes the
server down).
Returns `Snapshot` objects (treated as immutable).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ais import rpmkey, sitekey
from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.errors import AisError
from ais.model import Host, Package, Site

log = logging.getLogger("ais.server.state")


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the site and the published cache."""

    site: Site
    manifest: dict
    cache_dir: Path
    repo_dir: Path
    loaded_at: float
    hosts: dict[str, Host] = field(default_factory=dict)  # by name
    macs: dict[str, Host] = field(default_factory=dict)  # by lower-case MAC
    files: dict[str, Package] = field(default_factory=dict)  # by RPM file name
    nevras: dict[str, Package] = field(default_factory=dict)
    site_key: object | None = None  # the site's ed25519 private key: signs plans (ais.sitekey)
    rpm_keys: tuple[str, ...] = ()  # the site's RPM key, armored (ais.rpmkey): plans carry it

    @property
    def generation(self) -> int:
        return int(self.manifest.get("generation") or 0)

    def image_path(self, iid: str) -> Path | None:
        record = self.manifest.get("images", {}).get(iid)
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            return None
        rel = Path(record["file"])
        if rel.is_absolute() or ".." in rel.parts:
            return None
        return self.cache_dir / rel


def trusted_manifest(store: Store, manifest: dict):
    """The site's private key (None: the site has no key, or this server cannot sign plans) once the
    manifest is checked against the site key; BuildError for a manifest unsigned or wrongly signed
    when the cache has a site key (ais.sitekey)."""
    private = sitekey.load_private(store.root)
    public = sitekey.public_hex(private) if private is not None else sitekey.read_public(store.root)
    if public is None:
        return None
    if manifest.get("generation") or manifest.get("images"):  # generation 0: nothing published to check
        sitekey.verify_manifest(manifest, public, f"manifest {store.manifest_path}")
    if private is None:
        log.warning("the cache has the site's public key but not its private key (%s): plans are sent "
                    "unsigned, and clients that pin the site key will refuse them", sitekey.private_path(store.root))
    return private


def make_snapshot(site: Site, manifest: dict, cache_dir: Path, repo_dir: Path, site_key=None,
                  rpm_keys: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(
        site_key=site_key,
        rpm_keys=rpm_keys,
        site=site,
        manifest=manifest,
        cache_dir=Path(cache_dir).absolute(),
        repo_dir=Path(repo_dir).absolute(),
        loaded_at=time.time(),
        hosts={h.name: h for h in site.hosts},
        macs={m: h for h in site.hosts for m in h.macs},
        files={Path(p.filename).name: p for p in site.packages},
        nevras={p.nevra: p for p in site.packages},
    )


def _stat_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def descriptors_key(descriptors: Path, repo: Path) -> tuple:
    """Stat of every descriptor file and of the repository's repodata index."""
    items = []
    for dirpath, dirnames, filenames in os.walk(descriptors):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            items.append((str(path), _stat_key(path)))
    items.append(("repomd", _stat_key(repo / "repodata" / "repomd.xml")))
    return tuple(items)


class StateHolder:
    """Loads snapshots and notices when the manifest or the descriptors change."""

    def __init__(self, descriptors: Path, repo: Path, cache: Path, *, poll_seconds: float = 1.0):
        self.descriptors, self.repo = Path(descriptors), Path(repo)
        self.store = Store(cache)
        self.poll_seconds = poll_seconds
        self._reload_lock = threading.Lock()
        self._manifest_key = _stat_key(self.store.manifest_path)
        self._descriptors_key = descriptors_key(self.descriptors, self.repo)
        self._next_poll = time.monotonic() + poll_seconds
        self._failed_key: tuple | None = None
        self._snapshot = self._load()  # the first load raises: refuse to start on a broken site
        self.reloads = 0

    def _load(self, site: Site | None = None) -> Snapshot:
        """A new snapshot; the site is re-read only when none is given (descriptors changed)."""
        from ais.descriptors import load_site

        site = site or load_site(self.descriptors, self.repo)
        manifest = manifests.read(self.store)
        key = trusted_manifest(self.store, manifest)
        rpm_key = rpmkey.read_public(self.store.root)
        return make_snapshot(site, manifest, self.store.root, self.repo, site_key=key,
                             rpm_keys=(rpm_key,) if rpm_key else ())

    def current(self) -> Snapshot:
        """The snapshot to answer with; reloads first if something changed."""
        manifest_key = _stat_key(self.store.manifest_path)
        descriptors_changed = False
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_seconds
            descriptors_changed = descriptors_key(self.descriptors, self.repo) != self._descriptors_key
        if manifest_key != self._manifest_key or descriptors_changed:
            self._reload(manifest_key)
        return self._snapshot

    def _reload(self, manifest_key: tuple | None) -> None:
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is loading; answer from the current snapshot meanwhile
        try:
            d_key = descriptors_key(self.descriptors, self.repo)
            key = (manifest_key, d_key)
            if key == self._failed_key:
                return
            # A rebuild changes only the manifest: keep the site (no re-reading every RPM).
            keep_site = self._snapshot.site if d_key == self._descriptors_key else None
            try:
                snapshot = self._load(keep_site)
            except AisError as err:
                self._failed_key = key
                log.error("reload failed, still serving generation %d: %s", self._snapshot.generation, err)
                return
            self._snapshot = snapshot  # one reference assignment: atomic for readers
            self._manifest_key, self._descriptors_key = manifest_key, d_key
            self._failed_key = None
            self.reloads += 1
            log.info("loaded manifest generation %d (%d images, %d hosts)", snapshot.generation,
                     len(snapshot.manifest.get("images", {})), len(snapshot.site.hosts))
        finally:
            self._reload_lock.release()
