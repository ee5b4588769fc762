"""Signed RPMs end to end: `ais site sign-rpms`, images that carry the key, rpm refusing what the key did not sign.

- sign-rpms on a small copied repository (unsigned RPMs, one signed by another key, one whose
  signature was damaged) leaves every RPM signed by the site key, the metadata describing the new
  files; a second run signs nothing and leaves the metadata alone; a damaged RPM is refused.
- an image built by a site with an RPM key carries the key in its rpmdb (rpm's gpg-pubkey
  entry) and holds exactly its packages; one built from an unsigned repository is refused.
- the refusal table, through the real client (`ais client reinstall` onto a loop disk, a real
  `ais serve` over a cache built from the signed repository): the mail remainder's postfix RPM is
  (a) signed by the site key: installed; (b) unsigned; (c) re-signed with another key; (d) signed
  by the site key with its signature bytes damaged. The server serves that very file (the
  repository's metadata is made again, so the plan's sha256 matches it and only the signature is
  wrong). Each bad one is refused right after the plan, from the RPMs' headers alone, before
  anything is written: exit 1, a message naming the package and the reason, the target's bytes
  unchanged. The packages-only path (the image file gone) imports the key into the fresh
  filesystem's rpmdb: signed installs, unsigned is refused before the filesystem is made.
- rpm itself refuses them too (the second line of defence, `rpm_install(signed=True)` in a root
  holding the key): the whole transaction, each bad package named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ais import rpmkey, sitekey
from ais.cache.build import build_fs
from ais.descriptors import load_site
from ais.errors import BuildError
from ais.repo import metadata
from ais.repo.solver import RepoPool
from ais.rpmenv import (SignatureRefused, import_keys, installed_keys, installed_nevras, rpm_install, rpmsign,
                        signature_states, verify)
from ais.files import file_sha256
from ais.run import run
from aislab.disks import LoopDisk, Mounted, reinstall_argv
from aislab.net import ais_command
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors

pytestmark = [pytest.mark.root, pytest.mark.rpm]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"  # mail01's, in the demo descriptors
POSTFIX = "postfix-3.7.5-1.x86_64.rpm"
SMALL = ("filesystem-3.18-1.x86_64.rpm", "setup-2.14.3-1.x86_64.rpm", "httpd-filesystem-2.4.57-1.x86_64.rpm",
         "logrotate-3.21.0-1.x86_64.rpm")


def rpms_of(repo: Path) -> Path:
    return repo / "RPMS" / "x86_64"


def key_id(cache: Path) -> str:
    """The short key id rpm names the key by (gpg-pubkey-<id>-...)."""
    return rpmkey.fingerprint(cache)[-8:].lower()


def damage_signature(path: Path) -> None:
    """Flip a byte inside the RPM's header signature (the file stays an RPM with intact digests)."""
    hexsig = run(["rpm", "-qp", "--qf", "%{RSAHEADER}", str(path)]).stdout.strip()
    signature = bytes.fromhex(hexsig)
    data = bytearray(path.read_bytes())
    at = data.find(signature)
    assert at > 0 and len(signature) > 100, "no header signature found"
    data[at + len(signature) - 20] ^= 0xFF
    path.write_bytes(bytes(data))


def sign_with(cache: Path, paths: list[Path]) -> None:
    with rpmkey.gpg_home(cache) as home:
        rpmsign(paths, home, rpmkey.fingerprint(cache))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The site's cache with both keys, and another site's (a foreign RPM key)."""
    base = tmp_path_factory.mktemp("keys")
    for name in ("site", "other"):
        sitekey.init(base / name)
        rpmkey.init(base / name)
    return {"site": base / "site", "other": base / "other"}


@pytest.fixture(scope="module")
def signed_repo(keys, repo_dir, tmp_path_factory):
    """A copy of the demo repository, signed by the site key with `ais site sign-rpms`."""
    repo = tmp_path_factory.mktemp("signed") / "repo"
    shutil.copytree(repo_dir, repo)
    proc = run([*ais_command("site", "sign-rpms", "--repo", str(repo), "--cache", str(keys["site"]))])
    assert "RPMs signed with" in proc.stdout
    return repo


# ------------------------------------------------------------------ ais site sign-rpms

def test_sign_rpms_signs_what_the_site_key_did_not_and_refreshes_the_metadata(keys, repo_dir, tmp_path):
    repo = tmp_path / "repo"
    rpms_of(repo).mkdir(parents=True)
    for name in SMALL:
        shutil.copy(rpms_of(repo_dir) / name, rpms_of(repo))
    sign_with(keys["other"], [rpms_of(repo) / SMALL[1]])  # another site's signature
    sign_with(keys["site"], [rpms_of(repo) / SMALL[2]])
    damage_signature(rpms_of(repo) / SMALL[2])  # the site's, damaged
    metadata.refresh(repo)
    paths = [rpms_of(repo) / n for n in SMALL]
    key_file = rpmkey.public_path(keys["site"])
    assert set(signature_states(paths, key_file).values()) == {"unsigned"}

    argv = [*ais_command("site", "sign-rpms", "--repo", str(repo), "--cache", str(keys["site"]), "--json")]
    first = run(argv)
    assert '"signed": ["filesystem' in first.stdout and '"metadata_refreshed": true' in first.stdout
    assert signature_states(paths, key_file) == {p: "signed" for p in paths}
    indexed = RepoPool(repo)
    for path in paths:  # the metadata describes the signed files: plans carry their sha256
        (pkg,) = indexed.versions(path.name.rsplit("-", 2)[0])
        assert Path(pkg.filename).name == path.name and pkg.digest == file_sha256(path)
    assert not list(repo.rglob("*.ais-signing"))
    repomd = (repo / "repodata" / "repomd.xml").read_bytes()

    again = run(argv)
    assert '"signed": []' in again.stdout and '"metadata_refreshed": false' in again.stdout
    assert (repo / "repodata" / "repomd.xml").read_bytes() == repomd


def test_sign_rpms_refuses_a_damaged_rpm_and_signs_nothing(keys, repo_dir, tmp_path):
    repo = tmp_path / "repo"
    rpms_of(repo).mkdir(parents=True)
    for name in SMALL[:2]:
        shutil.copy(rpms_of(repo_dir) / name, rpms_of(repo))
    damaged = rpms_of(repo) / SMALL[0]
    data = bytearray(damaged.read_bytes())
    data[-100] ^= 0xFF  # the payload: its digest no longer matches
    damaged.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in rpms_of(repo).iterdir()}
    proc = run([*ais_command("site", "sign-rpms", "--repo", str(repo), "--cache", str(keys["site"]))], check=False)
    assert proc.returncode == 1, proc.stderr
    assert "fail their digest check" in proc.stderr and SMALL[0] in proc.stderr
    assert {p.name: p.read_bytes() for p in rpms_of(repo).iterdir()} == before


# ------------------------------------------------------------------ images carry the key

def test_an_image_built_by_a_site_with_an_rpm_key_carries_it(keys, signed_repo, repo_dir, tmp_path):
    base = load_site(ROOT / "descriptors", signed_repo).configuration("base").packages
    built = build_fs(list(base), signed_repo, tmp_path / "work", "ais-test", rpm_key=rpmkey.public_path(keys["site"]))
    assert built.nevras == {p.nevra for p in base}
    inside = tmp_path / "work" / "check"  # the rpmdb read back out of the ext4 image
    assert {k.split("-")[2] for k in installed_keys(inside)} == {key_id(keys["site"])}

    unsigned = load_site(ROOT / "descriptors", repo_dir)
    same = [p for p in unsigned.packages if p.nevra in built.nevras]
    with pytest.raises(BuildError, match="not signed .*ais site sign-rpms"):
        build_fs(same, repo_dir, tmp_path / "work2", "ais-test", rpm_key=rpmkey.public_path(keys["site"]))


# ------------------------------------------------------------------ the client refuses what the key did not sign

@pytest.fixture(scope="module")
def lab(keys, signed_repo, tmp_path_factory):
    base = tmp_path_factory.mktemp("client")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail"], ["mail01"])
    cache = base / "cache"
    shutil.copytree(keys["site"] / "site", cache / "site")
    manifest = publish_base_cache(descriptors, signed_repo, cache)
    image = manifest["images"][manifest["configurations"]["mail"]["image"]]
    return {"base": base, "descriptors": descriptors, "cache": cache, "image_packages": set(image["packages"]),
            "image_file": image["file"], "site": load_site(descriptors, signed_repo)}


def variant_repo(signed_repo: Path, where: Path, row: str, keys: dict) -> Path:
    """The signed repository with postfix's file replaced as the row says, metadata made again."""
    repo = where / "repo"
    rpms_of(repo).mkdir(parents=True)
    for path in rpms_of(signed_repo).iterdir():
        os.link(path, rpms_of(repo) / path.name)  # the RPMs are only read: links, not copies
    postfix = rpms_of(repo) / POSTFIX
    if row != "signed by the site key":
        postfix.unlink()
        shutil.copy(rpms_of(signed_repo) / POSTFIX, postfix)
    if row == "unsigned":
        run(["rpmsign", "--delsign", str(postfix)])
    elif row == "re-signed with another key":
        sign_with(keys["other"], [postfix])
    elif row == "signature damaged":
        damage_signature(postfix)
    metadata.refresh(repo)
    return repo


ROWS = [
    ("signed by the site key", None),
    ("unsigned", f"{POSTFIX}: not signed (no signature at all"),
    ("re-signed with another key", f"{POSTFIX}: not signed by the site's key"),
    ("signature damaged", f"{POSTFIX}: bad signature"),
]


GARBAGE = b"not a filesystem " * 64  # the disk's first bytes before the reinstall


def reinstall_facts(lab, repo: Path, tmp_path: Path) -> tuple:
    """`ais client reinstall` of mail01 from a server over `repo`, pinning the site key; (the
    process, then the target's packages, its keys, rpm -Va, whether staging was left) or, when the
    client refused before writing, (the process, whether the disk's first bytes are unchanged)."""
    with ServeProcess(lab["descriptors"], repo, lab["cache"], tmp_path / "history.sqlite") as server, \
            LoopDisk(tmp_path / "disk.img", 512) as disk:
        with open(disk.device, "r+b") as dev:
            dev.write(GARBAGE)
        argv = reinstall_argv(server.url, "mail01", TOKEN, disk.device, tmp_path / "state",
                              "--site-key", str(lab["cache"] / "site" / "site-key.pub"))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        if proc.returncode != 0 and "so nothing was written" in proc.stderr:
            with open(disk.device, "rb") as dev:
                return proc, dev.read(len(GARBAGE)) == GARBAGE
        with Mounted(disk.device) as root:
            return proc, installed_nevras(root), installed_keys(root), verify(root), (root / ".ais-staging").exists()


@pytest.mark.parametrize("row, words", ROWS, ids=[r[0] for r in ROWS])
def test_the_remainder_installs_only_when_signed_by_the_site_key(lab, keys, signed_repo, row, words, tmp_path):
    repo = variant_repo(signed_repo, tmp_path, row, keys)
    proc, *facts = reinstall_facts(lab, repo, tmp_path)
    if words is None:
        packages, keys_in, rpm_va, staging_left = facts
        assert proc.returncode == 0, proc.stderr
        assert {k.split("-")[2] for k in keys_in} == {key_id(keys["site"])}  # the image carries the key
        assert packages == set(lab["site"].configuration("mail").nevras) and rpm_va == "" and not staging_left
        assert "header signatures are the site's RPM key's: checked before writing" in proc.stderr
        assert "each checked against the site's RPM key" in proc.stderr
    else:
        assert proc.returncode == 1, proc.stderr
        assert words in proc.stderr and "so nothing was written" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert facts == [True]  # the disk's bytes are as they were: nothing was written


@pytest.mark.parametrize("row, words", [ROWS[0], ROWS[1]], ids=[ROWS[0][0], ROWS[1][0]])
def test_packages_only_imports_the_key_into_the_fresh_rpmdb(lab, keys, signed_repo, row, words, tmp_path):
    """No image (its file is gone): the whole configuration is the remainder, onto a fresh filesystem."""
    image = lab["cache"] / lab["image_file"]
    saved = tmp_path / "saved.aisimg"
    shutil.move(image, saved)
    try:
        proc, *facts = reinstall_facts(lab, variant_repo(signed_repo, tmp_path, row, keys), tmp_path)
    finally:
        shutil.move(saved, image)
    if words is None:
        packages, keys_in, _, _ = facts
        assert "packages-only" in proc.stderr or "fresh filesystem" in proc.stderr, proc.stderr
        assert {k.split("-")[2] for k in keys_in} == {key_id(keys["site"])}
        assert proc.returncode == 0, proc.stderr
        assert packages == set(lab["site"].configuration("mail").nevras)
    else:
        assert proc.returncode == 1 and words in proc.stderr, proc.stderr
        assert facts == [True] and "fresh filesystem" not in proc.stderr


@pytest.mark.parametrize("row, words", ROWS[1:], ids=[r[0] for r in ROWS[1:]])
def test_rpm_itself_refuses_them_too(lab, keys, signed_repo, row, words, tmp_path):
    """The second line of defence: rpm's own check in the transaction, with the key in the rpmdb."""
    repo = variant_repo(signed_repo, tmp_path, row, keys)
    root = tmp_path / "root"
    import_keys(root, [rpmkey.public_path(keys["site"])])
    files = [rpms_of(repo) / (re.sub(r"^(.*)-\d+:(.*)$", r"\1-\2", nevra) + ".rpm")
             for nevra in lab["site"].configuration("mail").nevras]  # the whole configuration: its dependencies
    assert rpms_of(repo) / POSTFIX in files
    with pytest.raises(SignatureRefused) as refused:
        rpm_install(root, files, signed=True)
    message = str(refused.value)
    assert words.replace(POSTFIX, "postfix-3.7.5-1.x86_64") in message or words in message, message
    assert "installed none of the transaction" in message
    assert installed_nevras(root) == set()


@pytest.mark.parametrize("row, words", [("signed by the site key", None), ("unsigned", "does not verify"),
                                        ("re-signed with another key", "public key not available")])
def test_the_agent_installs_only_signed_updates_on_a_signed_host(lab, keys, signed_repo, row, words, tmp_path):
    """An agent's transaction (a child running the rpm bindings) on a root whose rpmdb holds the site key."""
    from ais.agent.transaction import apply

    repo = variant_repo(signed_repo, tmp_path, row, keys)
    root = tmp_path / "root"
    import_keys(root, [rpmkey.public_path(keys["site"])])
    files = [str(rpms_of(repo) / (re.sub(r"^(.*)-\d+:(.*)$", r"\1-\2", nevra) + ".rpm"))
             for nevra in lab["site"].configuration("mail").nevras]
    answer = apply(str(root), files, [])
    if words is None:
        assert answer["ok"], answer
        assert installed_nevras(root) == set(lab["site"].configuration("mail").nevras)
    else:
        assert not answer["ok"] and any(words in p for p in answer["problems"]), answer
        assert installed_nevras(root) == set()
