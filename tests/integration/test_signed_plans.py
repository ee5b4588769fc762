"""Signed plans end to end: a real `ais serve` over a cache with a site key, the real client.

The client that pins the site key takes the plan the server signed over its request; it refuses,
with exit 1, a message and nothing written (the session holds no plan, the target is untouched),
a plan from a server without the key, a plan checked against another key, and a plan a hostile
server replays from an earlier request. `ais serve` refuses to start on a manifest the site key
did not sign. One real reinstall onto a loop disk with the key pinned still passes.
"""

import hashlib
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from ais import sitekey
from ais.run import run
from aislab.canned import CannedServer
from aislab.disks import LoopDisk, reinstall_argv, target_facts
from aislab.net import ais_command
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors

pytestmark = [pytest.mark.root, pytest.mark.rpm]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"  # mail01's, in the demo descriptors


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("signed")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail"], ["mail01"])
    cache = base / "cache"
    public, _ = sitekey.init(cache)  # before publishing: the manifest is signed
    publish_base_cache(descriptors, repo_dir, cache)
    assert json.loads((cache / "manifest.json").read_text())["signature"]["key"] == public
    unsigned = base / "cache-without-key"  # the same published cache, served by a server without the key
    shutil.copytree(cache, unsigned, ignore=shutil.ignore_patterns("site"))
    other, _ = sitekey.init(base / "other")
    with ServeProcess(descriptors, repo_dir, cache, base / "history.sqlite") as server, \
            ServeProcess(descriptors, repo_dir, unsigned, base / "history2.sqlite") as plain:
        yield {"base": base, "descriptors": descriptors, "repo": repo_dir, "cache": cache, "public": public,
               "other": other, "server": server, "plain": plain}


@pytest.fixture()
def target(tmp_path):
    """A file standing for the disk: random bytes whose digest must not change."""
    path = tmp_path / "disk.img"
    path.write_bytes(hashlib.sha256(b"garbage").digest() * 4096)
    return path


def client_plan(url, key, state, target):
    argv = [*ais_command("client", "plan"), "--server", url, "--host", "mail01", "--token", TOKEN,
            "--target", str(target), "--state", str(state), "--retries", "1", *(["--site-key", key] if key else [])]
    return run(argv, check=False, timeout=60)


def assert_refused(proc, state, target, words):
    assert proc.returncode == 1, proc.stderr
    assert words in proc.stderr and "nothing was written" in proc.stderr, proc.stderr
    assert json.loads((state / "session.json").read_text())["plan"] is None
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(
        hashlib.sha256(b"garbage").digest() * 4096).digest()


def test_the_pinned_key_takes_the_signed_plan(lab, tmp_path, target):
    pub_file = lab["cache"] / "site" / "site-key.pub"
    proc = client_plan(lab["server"].url, str(pub_file), tmp_path / "state", target)
    assert proc.returncode == 0, proc.stderr
    assert "not verified" not in proc.stderr
    assert json.loads((tmp_path / "state" / "session.json").read_text())["plan"]["host"] == "mail01"


def test_without_a_pinned_key_the_client_says_the_plan_is_not_verified(lab, tmp_path, target):
    proc = client_plan(lab["server"].url, None, tmp_path / "state", target)
    assert proc.returncode == 0 and "the plan is not verified: no site key pinned" in proc.stderr


def test_another_key_is_refused(lab, tmp_path, target):
    proc = client_plan(lab["server"].url, lab["other"], tmp_path / "state", target)
    assert_refused(proc, tmp_path / "state", target, "signed by another key")


def test_a_server_without_the_key_is_refused(lab, tmp_path, target):
    proc = client_plan(lab["plain"].url, lab["public"], tmp_path / "state", target)
    assert_refused(proc, tmp_path / "state", target, "is not signed")


def test_a_replayed_plan_is_refused(lab, tmp_path, target):
    old_nonce = sitekey.new_nonce()
    request = urllib.request.Request(f"{lab['server'].url}/v1/hosts/mail01/plan",
                                     headers={"Authorization": f"Bearer {TOKEN}", "X-AIS-Nonce": old_nonce})
    with urllib.request.urlopen(request, timeout=30) as answer:
        body, headers = answer.read(), dict(answer.headers)
    sitekey.verify_plan(lab["public"], old_nonce, body, headers["X-AIS-Signature"])  # a genuine, signed answer
    replayer = CannedServer(body, {k: v for k, v in headers.items() if k.lower().startswith(("x-ais-", "content-type"))})
    try:
        proc = client_plan(replayer.url, lab["public"], tmp_path / "state", target)
    finally:
        replayer.close()
    assert_refused(proc, tmp_path / "state", target, "a replayed plan")


def test_a_malformed_nonce_gets_400(lab):
    request = urllib.request.Request(f"{lab['server'].url}/v1/hosts/mail01/plan",
                                     headers={"Authorization": f"Bearer {TOKEN}", "X-AIS-Nonce": "x" * 32})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400 and b"X-AIS-Nonce must be 32 lower-case hex digits" in err.value.read()


def test_serve_refuses_to_start_on_an_unsigned_manifest(lab, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(lab["cache"], cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    del manifest["signature"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([*ais_command("serve"), "--plain-http", "--descriptors", str(lab["descriptors"]), "--repo",
                           str(lab["repo"]), "--cache", str(cache), "--history", str(tmp_path / "h.sqlite"),
                           "--listen", "127.0.0.1:0", "--stream-listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "is not signed, but the site has a key" in proc.stderr


def test_a_reinstall_with_the_key_pinned(lab, tmp_path):
    with LoopDisk(tmp_path / "disk.img", 1024) as disk:
        proc = run(reinstall_argv(lab["server"].url, "mail01", TOKEN, disk.device, tmp_path / "state",
                                  "--site-key", lab["public"]), check=False, timeout=240)
        assert proc.returncode == 0, proc.stderr
        assert "not verified" not in proc.stderr
        facts = target_facts(disk.device, [])
    assert facts["record"]["host"] == "mail01" and facts["fsck_rc"] == 0
