"""`ais site init` and `ais site show`: the site key that signs the manifest and every host plan.

What it does: `init` makes CACHE/site/site-key.pem (ed25519, 0600, directory 0700) and
site-key.pub (64 hex digits) through `ais.sitekey.init`, refusing when a key exists unless
`--rotate` (the old pair is kept as site-key.<UTC time>.pem/.pub); it prints the public key
and what to do next. `show` prints the public key, the value clients pin (`ais client ...
--site-key`, the boot environment's /etc/ais/site-key.pub).

Reads: --cache. Fails with `UsageError` (exit 2: a key exists and no --rotate; a key file that
is not a key), `WorldError` (exit 1: the key cannot be written; `show` on a site without a
key). Returns 0.
"""

from __future__ import annotations

import json
import sys

from ais import sitekey
from ais.errors import WorldError


def register(subparsers) -> None:
    site = subparsers.add_parser("site", help="the site key: signs the manifest and every host plan",
                                 description="The site key (ed25519) lives in CACHE/site/. `ais rebuild` signs "
                                             "the manifest with it, `ais serve` signs every plan, clients pin "
                                             "its public half (docs/server.md, \"Trust model\").")
    sub = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("init", help="make the site key (once); --rotate replaces it, keeping the old one",
                       description="Make CACHE/site/site-key.pem (private, 0600) and site-key.pub. Refuses when "
                                   "the site has a key, unless --rotate: the old pair is kept as "
                                   "site-key.<UTC time>.pem/.pub. After it: `ais rebuild` (signs the manifest), "
                                   "`ais bootenv build` (pins the key in the boot environment).")
    p.add_argument("--rotate", action="store_true", help="replace an existing key (the old pair is kept)")
    p.set_defaults(handler=cmd_init)
    p = sub.add_parser("show", help="print the site's public key (what clients pin)")
    p.add_argument("--json", action="store_true", help="print {\"public\", \"file\"} as JSON")
    p.set_defaults(handler=cmd_show)


def cmd_init(args) -> int:
    public, kept = sitekey.init(args.cache, rotate=args.rotate)
    print(public)
    for path in kept:
        print(f"site: the old key is kept as {path}", file=sys.stderr)
    print(f"site: key made in {sitekey.site_dir(args.cache)} (private: site-key.pem, mode 0600). Next: "
          "`ais rebuild` signs the manifest with it (`ais serve` refuses an unsigned one), then "
          "`ais bootenv build` pins it in the boot environment"
          + ("; hosts booting an older boot environment refuse plans until it is rebuilt" if kept else ""),
          file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    public = sitekey.read_public(args.cache)
    if public is None:
        raise WorldError(f"the site has no key ({sitekey.public_path(args.cache)} does not exist): "
                         "run `ais site init`")
    print(json.dumps({"public": public, "file": str(sitekey.public_path(args.cache))}) if args.json else public)
    return 0
