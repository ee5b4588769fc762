"""rpm as it is on the target, made to behave like rpm on a Red Hat system.

Every rpm call in AIS goes through here so images always carry /var/lib/rpm:
`--dbpath /var/lib/rpm` always (Debian's default is ~/.rpmdb, which `--root R`
would put at R/root/.rpmdb; on an RPM-based system it is the default anyway).
Installs get `--force-debian` only when the rpm on PATH is Debian's: that
option exists only there (it silences the "use Alien" nag) and any other rpm
refuses it. Which rpm it is is found once per rpm binary, from `rpm --help`.

Signatures (docs/server.md, "Signed RPMs"): `import_keys(root, files)` puts armored
OpenPGP public keys into root's rpmdb (rpm keeps each as a `gpg-pubkey-*` entry: a key,
not a package, so `installed_nevras` leaves those out and `installed_keys` lists them);
`rpm_install(..., signed=True)` runs the transaction with `_pkgverify_level signature`:
rpm reads and checks every package of the transaction before it installs any, and refuses
the whole transaction when one has no signature, a signature by a key not in the rpmdb,
or a signature that does not match (`SignatureRefused`, naming each package and why).
`signature_states(paths, key_file)` is `rpmkeys -K` against a throw-away rpmdb holding
only that key; `header_signatures(paths, keys)` checks only the header signature, which needs only
an RPM's first `header_length(prefix)` bytes (the client checks every package so before it
writes anything); `rpmsign(paths, gnupg, fingerprint)` (re)signs files in place.

Reads: a target root directory and RPM file paths. Fails with `ToolError` when
rpm fails, with `SignatureRefused` (a `ClientError`, exit 1) when rpm refused a
package's signature, and with `BuildError` when a scriptlet failed although rpm
exited 0 (rpm does that when a scriptlet cannot run). Returns the installed NEVRAs.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

from ais.errors import BuildError, ClientError, ToolError
from ais.run import run

DBPATH = "/var/lib/rpm"
RPM_FLAGS = ["--dbpath", DBPATH]
DEBIAN_FLAG = "--force-debian"  # Debian's rpm only; only -i/-U accept it
# Printed by rpm even when it exits 0; any of these means the root is not what we asked for.
SCRIPTLET_FAILURES = ("scriptlet failed", "/bin/sh is needed", "execv(")
KEY_PREFIX = "gpg-pubkey-"  # rpm's name for an imported OpenPGP key in its database
VERIFY_SIGNATURES = ["--define", "_pkgverify_level signature"]  # refuse unsigned and wrongly signed packages
GPG = "/usr/bin/gpg"  # Debian's rpm calls %__gpg /usr/bin/gpg2, which Debian does not ship
# What rpm 4.18 prints when it refuses a package's signature (-i/-U with _pkgverify_level signature):
#   "package NAME-V-R.A does not verify: no signature"
#   "package NAME-V-R.A does not verify: Header V4 RSA/SHA512 Signature, key ID 1234abcd: NOKEY"
#   "error: FILE: Header V4 RSA/SHA512 Signature, key ID 1234abcd: BAD" + "error: FILE cannot be installed"
HEADER_SIGNATURE = re.compile(r"Header V\d .*Signature, key ID \w+: ")  # one line of `rpmkeys -Kv`
RPM_LEAD_MAGIC, RPM_LEAD_BYTES, HEADER_MAGIC = b"\xed\xab\xee\xdb", 96, b"\x8e\xad\xe8"
DOES_NOT_VERIFY = re.compile(r"package (\S+) does not verify: (.*)")
BAD_SIGNATURE = re.compile(r"error: (\S+): (.*Signature, key ID \w+): BAD")


class SignatureRefused(ClientError):
    """rpm refused one or more packages of a transaction for their signature; nothing was installed."""


def rpm_cmd(root: str | os.PathLike, *args: str) -> list[str]:
    """argv for rpm operating on `root` with AIS's database path and flags."""
    return ["rpm", "--root", os.fspath(root), *RPM_FLAGS, *args]


def rpm_install(root: str | os.PathLike, rpm_paths: list[str | os.PathLike], *,
                upgrade: bool = False, signed: bool = False) -> None:
    """Install rpm_paths into root in ONE transaction; rpm orders by dependencies.

    One transaction, not one per package: 10x faster and rpm sees the whole set
    when it orders scriptlets. signed: every package must carry a good signature by
    a key in root's rpmdb (`import_keys` first), else rpm installs none of them and
    this raises SignatureRefused.
    """
    if not rpm_paths:
        return
    Path(root).mkdir(parents=True, exist_ok=True)  # rpm -i creates the database itself
    mode = "-U" if upgrade else "-i"
    argv = rpm_cmd(root, *(VERIFY_SIGNATURES if signed else []), mode, *install_flags(), "--quiet",
                   *[os.fspath(p) for p in rpm_paths])
    try:
        proc = run(argv)
    except ToolError as err:
        if signed:
            _raise_refused(err.stderr, rpm_paths)
        raise
    _check_scriptlets(proc.stdout + proc.stderr)


def _raise_refused(stderr: str, rpm_paths: list[str | os.PathLike]) -> None:
    """SignatureRefused naming each package rpm refused for its signature (none: return)."""
    names = {os.fspath(p): Path(p).name for p in rpm_paths}
    refused = []
    for line in stderr.splitlines():
        if m := DOES_NOT_VERIFY.search(line):
            refused.append(f"{m.group(1)}: {signature_problem(m.group(2))}")
        elif m := BAD_SIGNATURE.search(line):
            refused.append(f"{names.get(m.group(1), m.group(1))}: bad signature ({m.group(2)} does not "
                           "match the package: changed after it was signed)")
    if refused:
        raise SignatureRefused(f"rpm refused {len(refused)} package(s) for their signature, so it installed "
                               f"none of the transaction: {'; '.join(refused[:10])}")


def signature_problem(said: str) -> str:
    """rpm's reason (after "does not verify: ") in words an admin acts on."""
    if said.strip() == "no signature":
        return "not signed (no signature at all; the site's RPMs are signed by `ais site sign-rpms`)"
    if "NOKEY" in said:
        return f"not signed by the site's key ({said.strip()})"
    return f"bad signature ({said.strip()})"


def import_keys(root: str | os.PathLike, key_files: list[str | os.PathLike]) -> None:
    """Import armored OpenPGP public keys into root's rpmdb (again: a no-op). Through rpmkeys:
    `rpm --import` is only a popt alias for it (rpmpopt), which the boot environment does not carry."""
    if key_files:
        Path(root).mkdir(parents=True, exist_ok=True)
        run(["rpmkeys", "--root", os.fspath(root), *RPM_FLAGS, "--import", *[os.fspath(k) for k in key_files]])


def installed_keys(root: str | os.PathLike) -> set[str]:
    """The OpenPGP keys in root's rpmdb, as rpm names them (gpg-pubkey-<key id>-<created>)."""
    out = run(rpm_cmd(root, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n")).stdout
    return {line.strip() for line in out.splitlines() if line.startswith(KEY_PREFIX)}


def header_length(prefix: bytes) -> int | None:
    """Bytes from an RPM file's start to the end of its main header (the lead, the signature header
    padded to 8, the header): all a header signature covers. None when `prefix` is too short to
    tell; ValueError when it is not an RPM."""
    if len(prefix) < 4:
        return None
    if prefix[:4] != RPM_LEAD_MAGIC:
        raise ValueError("not an RPM file (no RPM lead)")
    offset = RPM_LEAD_BYTES
    for header in ("signature header", "header"):
        if len(prefix) < offset + 16:
            return None
        if prefix[offset:offset + 3] != HEADER_MAGIC:
            raise ValueError(f"not an RPM file (no {header} at byte {offset})")
        entries, data = struct.unpack(">II", prefix[offset + 8:offset + 16])
        if entries > 1 << 16 or data > 1 << 28:
            raise ValueError(f"not an RPM file (a {header} of {entries} entries and {data} bytes)")
        offset += 16 + 16 * entries + data
        if header == "signature header":
            offset += -offset % 8
    return offset


def header_signatures(paths: list[Path], key_files: list[str | os.PathLike]) -> dict[Path, str]:
    """Each file's header signature against the keys (`rpmkeys -Kv --nodigest`, a throw-away rpmdb
    holding only them): "signed", or why not, in signature_problem's words. The files may hold only
    an RPM's first `header_length` bytes: the header signature covers the header, whose digests
    cover the payload (checked later, with the whole file)."""
    states: dict[Path, str] = {}
    with tempfile.TemporaryDirectory(prefix="ais-rpmkeys-") as db:
        run(["rpmkeys", "--dbpath", db, "--import", *[os.fspath(k) for k in key_files]])
        for start in range(0, len(paths), 200):
            batch = paths[start:start + 200]
            out = run(["rpmkeys", "--dbpath", db, "-Kv", "--nodigest", *[os.fspath(p) for p in batch]],
                      check=False).stdout
            said: dict[str, list[str]] = {}
            current = None
            for line in out.splitlines():
                if not line.startswith((" ", "\t")) and line.endswith(":"):
                    current = said.setdefault(line[:-1], [])
                elif current is not None and HEADER_SIGNATURE.search(line):
                    current.append(line.strip())
            for path in batch:
                lines = said.get(os.fspath(path), [])
                states[path] = ("signed" if any(line.endswith(": OK") for line in lines)
                                else signature_problem(lines[0] if lines else "no signature"))
    return states


def signature_states(paths: list[Path], key_file: str | os.PathLike) -> dict[Path, str]:
    """Each file's state against ONE key (`rpmkeys -K` with a throw-away rpmdb holding only it):
    "signed" (a good signature by that key), "unsigned" (digests good, no signature by it: none,
    another key's, or a damaged one) or "damaged" (a digest does not match: not an intact RPM)."""
    states: dict[Path, str] = {}
    with tempfile.TemporaryDirectory(prefix="ais-rpmkeys-") as db:
        run(["rpmkeys", "--dbpath", db, "--import", os.fspath(key_file)])
        for start in range(0, len(paths), 200):
            batch = paths[start:start + 200]
            proc = run(["rpmkeys", "--dbpath", db, "-K", *[os.fspath(p) for p in batch]], check=False)
            said = {}
            for line in proc.stdout.splitlines():
                name, _, verdict = line.rpartition(": ")
                said[name] = verdict.strip()
            for path in batch:
                verdict = said.get(os.fspath(path), "")
                states[path] = ("signed" if verdict == "digests signatures OK"
                                else "damaged" if "DIGESTS" in verdict or not verdict  # rpm capitalises what failed
                                else "unsigned")
    return states


def rpmsign(paths: list[Path], gnupg: str | os.PathLike, fingerprint: str) -> None:
    """Sign the RPM files in place (any signature they had is removed first) with the key `fingerprint`
    from the GnuPG home `gnupg` (no passphrase). Removed first because rpmsign skips a file whose
    signature names the same key ("already contains identical signature") even when that signature
    is damaged."""
    if paths:
        files = [os.fspath(p) for p in paths]
        run(["rpmsign", "--delsign", *files])
        run(["rpmsign", "--define", f"__gpg {GPG}", "--define", f"_gpg_path {os.fspath(gnupg)}",
             "--define", f"_gpg_name {fingerprint}", "--addsign", *files],
            input="", env={"GNUPGHOME": os.fspath(gnupg)})


def install_flags() -> tuple[str, ...]:
    """Extra flags for -i/-U: ('--force-debian',) with Debian's rpm, else none."""
    return _install_flags_of(shutil.which("rpm") or "rpm")


@functools.lru_cache(maxsize=None)
def _install_flags_of(rpm_binary: str) -> tuple[str, ...]:
    """Asked once per rpm binary: Debian's rpm lists --force-debian in its --help."""
    proc = run([rpm_binary, "--help"], check=False)
    return (DEBIAN_FLAG,) if DEBIAN_FLAG in proc.stdout + proc.stderr else ()


def installed_nevras(root: str | os.PathLike) -> set[str]:
    """NEVRAs of the packages in root's rpm database, in AIS's name-epoch:version-release.arch form.
    The OpenPGP keys rpm also lists there (gpg-pubkey-*: see installed_keys) are not packages: left out."""
    fmt = "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n"
    out = run(rpm_cmd(root, "-qa", "--qf", fmt)).stdout
    return {line.strip() for line in out.splitlines() if line.strip() and not line.startswith(KEY_PREFIX)}


def verify(root: str | os.PathLike) -> str:
    """Output of `rpm -Va` on root (empty when every file is as packaged)."""
    return run(rpm_cmd(root, "-Va"), check=False).stdout


def _check_scriptlets(output: str) -> None:
    bad = [line for line in output.splitlines() if any(s in line for s in SCRIPTLET_FAILURES)]
    if bad:
        raise BuildError("rpm reported failing scriptlets:\n" + "\n".join(bad[:10]))
