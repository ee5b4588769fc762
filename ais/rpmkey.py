"""The site's OpenPGP key that signs its RPMs (rpmsign), beside the ed25519 site key.

What it does: `init(cache)` makes an RSA 3072 signing key without a passphrase in the GnuPG home
`CACHE/site/gnupg` (mode 0700, through `gpg --batch`) and exports its public half, armored, to
`CACHE/site/rpm-key.asc`; it refuses when the site has one unless asked to rotate (the old public
file is kept as `rpm-key.<UTC time>.asc`; the old secret key stays in the GnuPG home, unused).
RSA, not EdDSA: Debian's rpm 4.18 is what checks the signatures on the cache and the clients, and
RSA is the signature every rpm since 4.0 checks. `public_path(cache)` is the key file images import
and plans carry; `read_public(cache)` its text (None: the site has no RPM key);
`fingerprint(cache)` the key the file holds (the one rpmsign signs with).
gpg starts a gpg-agent for the GnuPG home; every function that used gpg stops it again
(`gpgconf --kill`), so no agent outlives the command.

Reads: the GnuPG home and the key file. Fails with `UsageError` (a key exists and no rotation
was asked for; rpm-key.asc is not an armored public key), `WorldError` (the files cannot be
written or read), `ToolError` (gpg failed). Returns fingerprints, paths, key text.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ais.errors import UsageError, WorldError, describe_os_error
from ais.files import set_aside, write_atomic
from ais.run import run
from ais.sitekey import read_key_file, site_dir

GNUPG = "gnupg"
PUBLIC = "rpm-key.asc"
ARMOR = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ALGORITHM = "rsa3072"


def gnupg_dir(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / GNUPG


def public_path(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / PUBLIC


@contextlib.contextmanager
def gpg_home(cache: str | os.PathLike) -> Iterator[Path]:
    """The GnuPG home (made 0700 if missing); its gpg-agent is stopped on the way out."""
    home = gnupg_dir(cache)
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home.parent, 0o700)
        os.chmod(home, 0o700)
    except OSError as err:
        raise WorldError(f"cannot make the GnuPG home {home}: {describe_os_error(err)}") from err
    try:
        yield home
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def gpg(home: Path, *args: str, input: str | None = None):
    return run(["gpg", "--batch", "--no-tty", "--homedir", str(home), *args], input=input)


def init(cache: str | os.PathLike, *, rotate: bool = False) -> tuple[str, list[Path]]:
    """Make the site's RPM signing key; (its fingerprint, the old public file kept when rotating)."""
    public = public_path(cache)
    if public.exists() and not rotate:
        raise UsageError(f"the site already has an RPM signing key ({public}); nothing was changed. To replace "
                         "it run `ais site init --rotate` (docs/server.md, \"Signed RPMs\")")
    made = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"AIS site {socket.getfqdn()} (RPM signing key, made {made}) <ais-site@{socket.getfqdn()}>"
    with gpg_home(cache) as home:
        before = _secret_fingerprints(home)
        # --yes: a second key with the same user id (two rotations in one second) is wanted
        gpg(home, "--yes", "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", name, ALGORITHM,
            "sign", "never")
        new = [f for f in _secret_fingerprints(home) if f not in before]
        if len(new) != 1:
            raise WorldError(f"gpg made {len(new)} new keys in {home}, expected one")
        armored = gpg(home, "--armor", "--export", new[0]).stdout
    kept = []
    try:
        if public.exists():
            kept = set_aside([public], "rpm-key")
        write_atomic(public, armored.encode(), mode=0o644)
    except OSError as err:
        raise WorldError(f"cannot write {public}: {describe_os_error(err)}") from err
    return new[0], kept


def _secret_fingerprints(home: Path) -> list[str]:
    out = gpg(home, "--with-colons", "--list-secret-keys").stdout
    return _fingerprints(out)


def _fingerprints(colons: str) -> list[str]:
    """Primary keys' fingerprints from gpg --with-colons output (the fpr line after each sec/pub)."""
    found, want = [], False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] in ("sec", "pub"):
            want = True
        elif fields[0] == "fpr" and want:
            found.append(fields[9])
            want = False
    return found


def read_public(cache: str | os.PathLike) -> str | None:
    """The armored public key of the site's RPM key, or None when the site has none."""
    path = public_path(cache)
    text = read_key_file(path, "the site's RPM key", text=True)
    if text is None:
        return None
    if ARMOR not in text:
        raise UsageError(f"{path}: not an armored OpenPGP public key (no {ARMOR!r} line)")
    return text


def fingerprint(cache: str | os.PathLike) -> str:
    """The fingerprint of the key in rpm-key.asc (the one to sign with); UsageError without one."""
    path = public_path(cache)
    if read_public(cache) is None:
        raise UsageError(f"the site has no RPM signing key ({path} does not exist): run `ais site init` "
                         "(a site made before RPM signing: `ais site init --rpm-key`)")
    with gpg_home(cache) as home:
        out = gpg(home, "--with-colons", "--import-options", "show-only", "--import", str(path)).stdout
        found = _fingerprints(out)
        if len(found) != 1:
            raise UsageError(f"{path}: expected one public key, found {len(found)}")
        secret = _secret_fingerprints(home)
    if found[0] not in secret:
        raise UsageError(f"{path} is key {found[0]}, whose secret half is not in {gnupg_dir(cache)}: "
                         "this machine cannot sign with it")
    return found[0]
