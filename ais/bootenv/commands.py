"""`ais bootenv build`: make the boot environment (kernel + initramfs) that `ais serve` hands to booting hosts.

Reads: parsed arguments (--cache shared by every command; --json, --quiet).
Fails with what `ais.bootenv.build` raises (exit 1 naming the step). Prints
the result (JSON with --json) and returns 0.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bootenv", help="build the boot environment (kernel + initramfs) booting hosts run ais-boot in",
        description="The boot environment: Debian's kernel and an initramfs with busybox, e2fsprogs, rpm, "
                    "kexec and Python with the AIS client, from Debian packages (apt-get download, never "
                    "installed). Content-addressed by its inputs under CACHE/bootenv/<key>/; `ais serve` "
                    "serves the latest one at /v1/boot/ (docs/client.md, docs/server.md).")
    sub = p.add_subparsers(dest="bootenv_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="build it unless one with the same inputs is built already",
                       description="Resolve the packages with apt, hash the inputs, and build "
                                   "CACHE/bootenv/<key>/{vmlinuz,initrd.img} only when no build of the "
                                   "same inputs exists; then CACHE/bootenv/current.json names it.")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.add_argument("--quiet", action="store_true", help="no step lines on stderr")
    b.set_defaults(handler=cmd_build)


def cmd_build(args) -> int:
    from ais.bootenv.build import build

    built = build(args.cache, quiet=args.quiet)
    result = {"key": built.key, "kernel": str(built.kernel), "initrd": str(built.initrd),
              "built": built.built_now, "kernel_release": built.info.get("kernel_release"),
              "initrd_bytes": built.info.get("initrd_bytes")}
    print(json.dumps(result, sort_keys=True) if args.json else
          f"boot environment {built.key[:16]} {'built' if built.built_now else 'up to date'}: "
          f"{built.kernel} {built.initrd}")
    return 0
