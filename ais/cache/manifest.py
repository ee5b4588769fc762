"""manifest.json: the published state of the cache, replaced atomically.

What a server serves is exactly what manifest.json lists; it changes only by
`publish` (write tmp/manifest.json.new, fsync, rename over manifest.json, fsync
the directory), so a reader sees the old or the new manifest, never a mix.
Layout: docs/interfaces.md ("The cache").

Its schema is `ais.contracts.Manifest`: `read` decodes and checks it, `publish`
checks what it is given, so a manifest that breaks the contract is never written.
When the cache has a site key (`ais site init`: CACHE/site/site-key.pem), `publish`
signs the manifest with it (`ais.sitekey.sign_manifest`: every image and header hash
is covered); `ais serve` refuses a manifest that is not signed by that key.
Reads: the cache's manifest.json. Fails with `BuildError` if it exists but is
not a valid manifest (a human must look: it is never written in place).
Returns plain dicts (the checked document).

generations.jsonl: after each publish, `log_generation` appends one line
(generation, published_at, images, stored bytes, budget, objective) for the
console's "generations over time". It is a log, not a state: one short
O_APPEND write, so a crash leaves at most a torn last line, which
`read_generations` skips; a failure to append is logged, never fails a
publish that already happened.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from ais import sitekey
from ais.cache.store import Store
from ais.contracts import Manifest, decode, to_builtins
from ais.errors import AisError, BuildError
from ais.faults import pause_point
from ais.files import fsync_dir

FORMAT = 1
GENERATIONS = "generations.jsonl"
log = logging.getLogger("ais.cache.manifest")


def empty() -> dict:
    """The manifest of a cache that never published anything."""
    return {"format": FORMAT, "generation": 0, "published_at": None, "plan": None,
            "images": {}, "configurations": {}}


def read(store: Store) -> dict:
    """The published manifest, or `empty()` when none was published yet."""
    try:
        text = store.manifest_path.read_text()
    except FileNotFoundError:
        return empty()
    return to_builtins(decode(text, Manifest, f"manifest {store.manifest_path}", BuildError,
                              "move it away and run `ais rebuild`"))


def make(*, previous: dict, plan_json: dict, images: dict[str, dict],
         configurations: dict[str, dict], cost: dict | None = None) -> dict:
    """The next manifest: generation + 1, stamped now; `cost` is the planner's cost model."""
    return {
        "format": FORMAT,
        "generation": int(previous.get("generation", 0)) + 1,
        "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan": plan_json,
        "images": images,
        "configurations": configurations,
        "cost": cost,
    }


def publish(store: Store, manifest: dict) -> None:
    """Replace manifest.json atomically and durably, signed with the site key when the cache has
    one (CACHE/site/site-key.pem); BuildError if the disk refuses or the manifest breaks its
    contract (then nothing is written)."""
    try:
        msgspec.convert(manifest, Manifest)
    except (msgspec.ValidationError, AisError) as err:
        raise BuildError(f"refusing to publish a manifest that breaks its contract: {err}") from err
    key = sitekey.load_private(store.root)
    manifest = {k: v for k, v in manifest.items() if k != "signature"}
    if key is not None:
        manifest = sitekey.sign_manifest(manifest, key)
    try:
        _publish(store, manifest)
    except OSError as err:
        (store.tmp / "manifest.json.new").unlink(missing_ok=True)
        raise BuildError(f"cannot publish {store.manifest_path}: {err}; "
                         "the previous manifest still serves") from err


def _publish(store: Store, manifest: dict) -> None:
    store.tmp.mkdir(parents=True, exist_ok=True)
    staged = store.tmp / "manifest.json.new"
    data = json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    pause_point("publish")
    os.replace(staged, store.manifest_path)
    fsync_dir(store.root)


def log_generation(store: Store, manifest: dict) -> None:
    """Append the published generation's summary to generations.jsonl (best effort)."""
    plan = manifest.get("plan") or {}
    line = json.dumps({
        "generation": manifest["generation"], "published_at": manifest["published_at"],
        "images": len(manifest["images"]),
        "stored_bytes": sum(int(i["stored_bytes"]) for i in manifest["images"].values()),
        "budget_bytes": plan.get("budget_bytes"), "objective": plan.get("objective"),
        "configurations": len(manifest["configurations"]),
    }, sort_keys=True) + "\n"
    try:
        fd = os.open(store.root / GENERATIONS, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            end = os.fstat(fd).st_size
            torn = end > 0 and os.pread(fd, 1, end - 1) != b"\n"  # a crash cut the last line: start a new one
            os.write(fd, (("\n" if torn else "") + line).encode())
        finally:
            os.close(fd)
    except OSError as err:
        log.warning("cannot append to %s: %s (the console's generation chart misses one point)",
                    store.root / GENERATIONS, err)


def read_generations(cache_root: str | os.PathLike) -> list[dict]:
    """The generations published so far, oldest first; torn or foreign lines are skipped."""
    try:
        text = (Path(cache_root) / GENERATIONS).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise BuildError(f"cannot read {Path(cache_root) / GENERATIONS}: {err}") from err
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("generation"), int):
            out.append(entry)
    return out


def known_sizes(manifest: dict) -> dict[frozenset[str], int]:
    """Measured stored bytes of published images, keyed by their nevra set (for the planner)."""
    return {frozenset(rec["packages"]): int(rec["stored_bytes"])
            for rec in manifest.get("images", {}).values()}

