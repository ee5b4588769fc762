"""`ais site init`, `show`, `cert` and `sign-rpms`: the site's keys, its CA, its signed RPMs.

What it does: `init` makes CACHE/site/site-key.pem (ed25519, 0600, directory 0700) and
site-key.pub (64 hex digits) through `ais.sitekey.init`, and the site's OpenPGP key for RPMs
(CACHE/site/gnupg, its public half in rpm-key.asc) through `ais.rpmkey.init`, refusing when the
keys exist unless `--rotate` (rotates both; the old files are kept, named by the UTC time); it
prints the public key and what to do next. It also makes the site CA (CACHE/site/ca.pem and
ca-key.pem, ais.siteca). `init --rpm-key` and `init --ca` make (or with --rotate rotate) only the
RPM key or only the CA: a site made before RPMs were signed, or before TLS, lacks them. `cert
--name N...` signs the server's TLS certificate (CACHE/site/tls/) with the CA. `show` prints the
public key, the value clients pin (`ais client ... --site-key`, the boot environment's
/etc/ais/site-key.pub). `sign-rpms --repo DIR` signs the repository's RPMs with the RPM key and
refreshes its metadata (ais.repo.sign).

Reads: --cache, --repo. Fails with `UsageError` (exit 2: a key exists and no --rotate; a key file
that is not a key; no RPM key to sign with), `WorldError` (exit 1: a key cannot be written; `show`
on a site without a key; gpg, rpmsign or createrepo_c failed; a damaged RPM). Returns 0.
"""

from __future__ import annotations

import json
import sys

from ais import rpmkey, siteca, sitekey
from ais.errors import UsageError, WorldError


def register(subparsers) -> None:
    site = subparsers.add_parser("site", help="the site's keys: sign the manifest, every host plan, the RPMs",
                                 description="The site key (ed25519) lives in CACHE/site/. `ais rebuild` signs "
                                             "the manifest with it, `ais serve` signs every plan, clients pin "
                                             "its public half (docs/server.md, \"Trust model\").")
    sub = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("init", help="make the site key (once); --rotate replaces it, keeping the old one",
                       description="Make CACHE/site/site-key.pem (private, 0600) and site-key.pub. Refuses when "
                                   "the site has a key, unless --rotate: the old pair is kept as "
                                   "site-key.<UTC time>.pem/.pub. After it: `ais rebuild` (signs the manifest), "
                                   "`ais bootenv build` (pins the key in the boot environment). It also makes "
                                   "the OpenPGP key that signs the site's RPMs (CACHE/site/gnupg, public half "
                                   "rpm-key.asc; `ais site sign-rpms`).")
    p.add_argument("--rotate", action="store_true", help="replace existing keys (the old public files are kept)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--rpm-key", action="store_true",
                      help="only the RPM signing key (a site made before RPMs were signed); with --rotate: rotate it")
    only.add_argument("--ca", action="store_true",
                      help="only the site CA (a site made before TLS); with --rotate: rotate it")
    p.set_defaults(handler=cmd_init)
    p = sub.add_parser("cert", help="sign the server's TLS certificate with the site CA",
                       description="Write CACHE/site/tls/server.pem and server-key.pem (0600), signed by the site "
                                   "CA, for the names hosts use to reach `ais serve` (its address in their "
                                   "ais.server= URL). Run it again to renew; restart `ais serve` to use the new one.",
                       epilog="Example: ais site cert --cache /srv/ais/cache --name 10.0.0.1 --name ais.example.org")
    p.add_argument("--name", action="append", default=[], metavar="ADDRESS|DNS-NAME",
                   help="an IP address or DNS name of the server (repeat for each)")
    p.add_argument("--days", type=int, default=siteca.SERVER_DAYS, metavar="N",
                   help="valid for N days from now [%(default)s]")
    p.set_defaults(handler=cmd_cert)
    p = sub.add_parser("sign-rpms", help="sign a repository's RPMs with the site's RPM key, refresh its metadata",
                       description="Sign (rpmsign) every RPM under --repo that is not signed by the site's RPM key "
                                   "(unsigned, another key's, a damaged signature), each atomically, then run "
                                   "createrepo_c if anything changed. Idempotent. Images then carry the key and "
                                   "clients install only RPMs it signed (docs/server.md, \"Signed RPMs\").")
    p.add_argument("--repo", required=True, metavar="DIR", help="the RPM repository to sign (createrepo_c's)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(handler=cmd_sign_rpms)
    p = sub.add_parser("show", help="print the site's public key (what clients pin)")
    p.add_argument("--json", action="store_true", help="print {\"public\", \"file\"} as JSON")
    p.set_defaults(handler=cmd_show)


def cmd_init(args) -> int:
    if args.rpm_key:
        return init_rpm_key(args)
    if args.ca:
        return init_ca(args)
    has_site, has_rpm = sitekey.public_path(args.cache).exists(), rpmkey.public_path(args.cache).exists()
    if has_site and has_rpm and not args.rotate:
        raise UsageError(f"the site already has a key ({sitekey.private_path(args.cache)}) and an RPM signing key "
                         f"({rpmkey.public_path(args.cache)}); nothing was changed. To replace both run "
                         "`ais site init --rotate` (docs/server.md, \"Rotating the site key\")"
                         + ("" if siteca.ca_path(args.cache).exists() else
                            "; `ais site init --ca` makes the site CA it lacks"))
    if has_rpm and not args.rotate:
        rpmkey.init(args.cache)  # refuses, saying so
    if has_site and not args.rotate:
        raise UsageError(f"the site already has a key ({sitekey.private_path(args.cache)}) but no RPM signing "
                         f"key; nothing was changed. Run `ais site init --rpm-key` to make only that one, or "
                         "`ais site init --rotate` to replace both (docs/server.md, \"Signed RPMs\")")
    public, kept = sitekey.init(args.cache, rotate=args.rotate)
    fpr, kept_rpm = rpmkey.init(args.cache, rotate=args.rotate)
    ca_fpr, kept_ca = siteca.init(args.cache, rotate=args.rotate)
    print(public)
    print(f"site: CA {ca_fpr[:16]}... made ({siteca.ca_path(args.cache)}); `ais site cert --name ADDRESS` signs "
          "the server's TLS certificate with it", file=sys.stderr)
    for path in kept + kept_rpm + kept_ca:
        print(f"site: the old key is kept as {path}", file=sys.stderr)
    print(f"site: RPM signing key {fpr} made in {rpmkey.gnupg_dir(args.cache)} (public: "
          f"{rpmkey.public_path(args.cache)}); `ais site sign-rpms --repo DIR` signs the site's RPMs with it",
          file=sys.stderr)
    print(f"site: key made in {sitekey.site_dir(args.cache)} (private: site-key.pem, mode 0600). Next: "
          "`ais rebuild` signs the manifest with it (`ais serve` refuses an unsigned one), then "
          "`ais bootenv build` pins it in the boot environment"
          + ("; hosts booting an older boot environment refuse plans until it is rebuilt" if kept else ""),
          file=sys.stderr)
    return 0


def init_rpm_key(args) -> int:
    return init_one(args, rpmkey.init, "RPM key",
                    f"site: RPM signing key made (public: {rpmkey.public_path(args.cache)}). Next: `ais site "
                    "sign-rpms --repo DIR` signs the repository with it, then `ais rebuild` (new images carry the "
                    "key); until the repository is signed, clients refuse its RPMs")


def init_ca(args) -> int:
    return init_one(args, siteca.init, "CA",
                    f"site: CA made ({siteca.ca_path(args.cache)}). Next: `ais site cert --name ADDRESS` (the "
                    "server's certificate), then `ais bootenv build` (pins the CA in the boot environment)")


def init_one(args, init, what: str, next_steps: str) -> int:
    """Make (or rotate) one of the site's keys alone: its fingerprint on stdout, what was kept and what
    to do next on stderr."""
    fingerprint, kept = init(args.cache, rotate=args.rotate)
    print(fingerprint)
    for path in kept:
        print(f"site: the old {what} is kept as {path}", file=sys.stderr)
    print(next_steps, file=sys.stderr)
    return 0


def cmd_cert(args) -> int:
    path, until = siteca.issue_server(args.cache, args.name, args.days)
    print(path)
    print(f"site: TLS certificate for {', '.join(args.name)} valid until {until:%Y-%m-%d %H:%M} UTC; "
          "`ais serve` uses it from its next start", file=sys.stderr)
    return 0


def cmd_sign_rpms(args) -> int:
    from ais.repo.sign import sign_repo

    done = sign_repo(args.repo, args.cache)
    if args.json:
        print(json.dumps(done))
    else:
        print(f"{len(done['signed'])} of {done['rpms']} RPMs signed with {done['key']}; metadata "
              f"{'refreshed' if done['metadata_refreshed'] else 'already current'}")
    return 0


def cmd_show(args) -> int:
    public = sitekey.read_public(args.cache)
    if public is None:
        raise WorldError(f"the site has no key ({sitekey.public_path(args.cache)} does not exist): "
                         "run `ais site init`")
    ca = siteca.ca_path(args.cache)
    print(json.dumps({"public": public, "file": str(sitekey.public_path(args.cache)),
                      "ca": str(ca) if ca.exists() else None}) if args.json else public)
    return 0
