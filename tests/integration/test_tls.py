"""TLS end to end: `ais serve` with the site CA's certificate, the real client, a listening neighbour.

A reinstall over https:// from another network namespace, the site CA and the site key pinned,
while a raw packet socket on the server's switch port keeps every frame: the host's token and its
secret host file are nowhere in what it heard. The same neighbour hears the token of a plan asked
of a server run with --plain-http (so it does hear what is in clear).

Refusals, table-driven, each with exit 1, a message saying what was wrong, no plan kept and the
target untouched: a server whose certificate another CA signed; a certificate the site CA signed
that has expired; one for another name; a server that does not speak TLS; an http:// URL once a CA
is pinned. `ais serve` refuses (exit 2) to start without a certificate unless --plain-http, on an
expired certificate, and with --plain-http beside --tls-cert. A boot listener (--boot-listen) serves
the boot files in plain HTTP and nothing else; its iPXE script points the client at https://.
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import ssl
from pathlib import Path

import pytest

from ais import siteca, sitekey
from ais.run import run, start
from aislab.canned import CannedServer
from aislab.disks import LoopDisk, reinstall_argv, target_facts
from aislab.lines import next_line
from aislab.net import NetLab, ais_command
from aislab.site import ServeProcess, publish_base_cache, request, subset_descriptors

pytestmark = [pytest.mark.root, pytest.mark.rpm]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"  # mail01's, in the demo descriptors
MAC = "52:54:00:00:00:13"
SECRET = (ROOT / "descriptors" / "files" / "mail01" / "site.key").read_text().splitlines()[1][:40]
NOW = datetime.datetime.now(datetime.timezone.utc)


def write_cert(cache, name, names, *, days=30, ago=None):
    """A server certificate signed by the CA of `cache`, written as NAME.pem and NAME-key.pem."""
    ca_cert, ca_key = siteca.load_ca(cache)
    start = NOW - datetime.timedelta(days=ago) if ago else NOW - datetime.timedelta(minutes=5)
    cert, key = siteca.make_certificate(ca_cert, ca_key, names, start, start + datetime.timedelta(days=days))
    (cache.parent / f"{name}.pem").write_bytes(cert)
    (cache.parent / f"{name}-key.pem").write_bytes(key)
    return cache.parent / f"{name}.pem", cache.parent / f"{name}-key.pem"


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("tls")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail"], ["mail01"])
    cache = base / "cache"
    public, _ = sitekey.init(cache)
    siteca.init(cache)
    publish_base_cache(descriptors, repo_dir, cache)
    siteca.init(base / "other" / "cache")  # another site's CA
    return {"base": base, "descriptors": descriptors, "repo": repo_dir, "cache": cache, "public": public,
            "ca": siteca.ca_path(cache)}


@pytest.fixture(scope="module")
def servers(site):
    """On loopback: the site's server; one whose certificate another CA signed; one whose certificate
    names another host; one in plain HTTP."""
    base, cache = site["base"], site["cache"]
    siteca.issue_server(cache, ["127.0.0.1", "localhost"])
    other = write_cert(base / "other" / "cache", "other", ["127.0.0.1"])
    elsewhere = write_cert(cache, "elsewhere", ["ais.example.org", "198.51.100.200"])
    args = (site["descriptors"], site["repo"], cache)
    with ServeProcess(*args, base / "h1.sqlite", tls=True) as good, \
            ServeProcess(*args, base / "h2.sqlite", "--tls-cert", str(other[0]), "--tls-key", str(other[1]),
                         tls=True) as other_ca, \
            ServeProcess(*args, base / "h3.sqlite", "--tls-cert", str(elsewhere[0]), "--tls-key",
                         str(elsewhere[1]), tls=True) as other_name, \
            ServeProcess(*args, base / "h4.sqlite") as plain:
        yield {"good": good, "other_ca": other_ca, "other_name": other_name, "plain": plain}


@pytest.fixture()
def target(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(hashlib.sha256(b"garbage").digest() * 4096)
    return path


def client_plan(url, state, target, *extra):
    argv = [*ais_command("client", "plan"), "--server", url, "--host", "mail01", "--token", TOKEN,
            "--target", str(target), "--state", str(state), "--retries", "1", *extra]
    return run(argv, check=False, timeout=60)


def test_the_site_server_is_trusted(site, servers, tmp_path, target):
    proc = client_plan(servers["good"].url, tmp_path / "state", target, "--site-ca", str(site["ca"]),
                       "--site-key", site["public"])
    assert servers["good"].url.startswith("https://")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "state" / "session.json").read_text())["plan"]["host"] == "mail01"
    assert "certificate signed by the site CA" in proc.stderr and "plain HTTP to" not in proc.stderr
    assert "PLAIN HTTP" not in servers["good"].log() and "PLAIN HTTP" in servers["plain"].log()
    assert "eof_received" not in servers["good"].log()  # asyncio's warning when TLS and half-close meet


def expired_server(site):
    cert, key = write_cert(site["cache"], "expired", ["127.0.0.1"], days=10, ago=20)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return CannedServer(b"{}", tls=context)


# (case, the server, extra client arguments beyond --site-ca, words the refusal says)
REFUSALS = [
    ("another CA signed its certificate", "other_ca", "is not signed by the site CA"),
    ("its certificate has expired", "expired", "has expired"),
    ("its certificate names another host", "other_name", "does not name that server"),
    ("it does not speak TLS", "plain-as-https", "is it serving HTTPS"),
    ("http:// with a CA pinned", "plain", "refusing plain http://"),
]


@pytest.mark.parametrize("case,server,words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_before_anything_is_written(site, servers, tmp_path, target, case, server, words):
    canned = expired_server(site) if server == "expired" else None
    try:
        url = (canned.url if canned else
               servers["plain"].url.replace("http://", "https://") if server == "plain-as-https" else
               servers[server].url)
        proc = client_plan(url, tmp_path / "state", target, "--site-ca", str(site["ca"]))
    finally:
        if canned:
            canned.close()
    assert proc.returncode == 1, proc.stderr
    assert words in proc.stderr and "nothing was written" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "attempt" not in proc.stderr  # final at once, never retried
    session = tmp_path / "state" / "session.json"
    assert not session.exists() or json.loads(session.read_text())["plan"] is None
    assert target.read_bytes() == hashlib.sha256(b"garbage").digest() * 4096


def test_https_without_a_site_ca_is_a_usage_error(servers, tmp_path, target):
    proc = client_plan(servers["good"].url, tmp_path / "state", target)
    assert proc.returncode == 2 and "HTTPS needs the site CA" in proc.stderr, proc.stderr


# (case, arguments of `ais serve` beyond the site's, exit code, words)
SERVE_REFUSALS = [
    ("no certificate and no --plain-http", ["--cache", "{bare}"], 2, "no TLS certificate at"),
    ("an expired certificate", ["--tls-cert", "{expired}", "--tls-key", "{expired_key}"], 2,
     "the server's TLS certificate expired on"),
    ("--plain-http beside --tls-cert", ["--plain-http", "--tls-cert", "{expired}"], 2, "leave out --tls-cert"),
    ("a certificate without its key", ["--tls-cert", "{expired_valid}", "--tls-key", "{missing}"], 2,
     "no TLS key at"),
]


@pytest.mark.parametrize("case,extra,code,words", SERVE_REFUSALS, ids=[r[0] for r in SERVE_REFUSALS])
def test_serve_refuses_to_start(site, tmp_path, case, extra, code, words):
    expired = write_cert(site["cache"], "old", ["127.0.0.1"], days=10, ago=20)
    valid = write_cert(site["cache"], "valid", ["127.0.0.1"])
    bare = tmp_path / "cache-without-certificate"
    shutil.copytree(site["cache"], bare, symlinks=True, ignore=shutil.ignore_patterns("tls"))
    values = {"bare": str(bare), "expired": str(expired[0]), "expired_key": str(expired[1]),
              "expired_valid": str(valid[0]), "missing": str(tmp_path / "missing.pem")}
    argv = [*ais_command("serve"), "--descriptors", str(site["descriptors"]), "--repo", str(site["repo"]),
            "--cache", str(site["cache"]), "--history", str(tmp_path / "h.sqlite"), "--listen", "127.0.0.1:0",
            "--stream-listen", "127.0.0.1:0", "--seconds", "0", *[a.format(**values) for a in extra]]
    proc = run(argv, check=False, timeout=120, cwd=ROOT)
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_boot_listener_serves_boot_files_only_and_points_at_https(site, tmp_path):
    env = {"format": 1, "key": "a" * 64, "kernel": f"{'a' * 64}/vmlinuz", "initrd": f"{'a' * 64}/initrd.img",
           "kernel_sha256": "b" * 64, "initrd_sha256": "c" * 64, "kernel_release": "6.1.0-test"}
    cache = tmp_path / "cache"
    shutil.copytree(site["cache"], cache, symlinks=True)
    (cache / "bootenv").mkdir(exist_ok=True)
    (cache / "bootenv" / "current.json").write_text(json.dumps(env))
    siteca.issue_server(cache, ["127.0.0.1"])
    with ServeProcess(site["descriptors"], site["repo"], cache, tmp_path / "h.sqlite", "--boot-target", "/dev/vda",
                      "--boot-listen", "127.0.0.1:0", tls=True) as server:
        boot = type("Boot", (), {"url": server.info["boot_url"]})()
        status, _, script = request(boot, "GET", f"/v1/boot/ipxe/{MAC}")
        assert status == 200, script
        api_port = server.url.rsplit(":", 1)[1]
        boot_port = boot.url.rsplit(":", 1)[1]
        text = script.decode()
        assert f"ais.server=https://127.0.0.1:{api_port} " in text
        assert f"kernel http://127.0.0.1:{boot_port}/v1/boot/vmlinuz" in text
        for path in ("/v1/hosts/mail01/plan", "/v1/health", "/console/cache"):
            status, _, body = request(boot, "GET", path, {"Authorization": f"Bearer {TOKEN}"})
            assert status == 404 and b"boot files only" in body, (path, body)


def test_a_reinstall_over_tls_across_the_network_that_a_neighbour_cannot_read(site, tmp_path):
    """Server in namespace 0, client in namespace 1, the neighbour on the server's switch port."""
    cache = site["cache"]
    with NetLab(2, tag=f"aitls{os.getpid() % 10000}") as lab:
        siteca.issue_server(cache, [lab.address(0)])
        heard = tmp_path / "heard.bin"
        sniffer = start(["ip", "netns", "exec", lab.bridge_ns, "python3", str(ROOT / "tests/integration/sniff.py"),
                         "p0", str(heard)])
        lab.procs.append(sniffer)
        assert next_line(sniffer.stdout, 30).strip() == "listening"
        servers = []
        for name, extra in (("tls", []), ("plain", ["--plain-http"])):
            argv = [*ais_command("serve"), "--descriptors", str(site["descriptors"]), "--repo", str(site["repo"]),
                    "--cache", str(cache), "--history", str(tmp_path / f"{name}.sqlite"),
                    "--listen", f"{lab.address(0)}:0", "--stream-listen", f"{lab.address(0)}:0", *extra]
            proc = lab.spawn(0, argv, stderr=open(tmp_path / f"{name}.log", "wb"), cwd=ROOT,
                             env={"PYTHONUNBUFFERED": "1"})
            servers.append(json.loads(next_line(proc.stdout, 60))["listening"]["url"])
        tls_url, plain_url = servers
        assert tls_url.startswith("https://") and plain_url.startswith("http://")
        with LoopDisk(tmp_path / "disk.img", 1024) as disk:
            proc = run(lab.argv(1, reinstall_argv(tls_url, "mail01", TOKEN, disk.device, tmp_path / "state",
                                                  "--site-ca", str(site["ca"]), "--site-key", site["public"])),
                       check=False, timeout=300)
            assert proc.returncode == 0, proc.stderr
            facts = target_facts(disk.device, ["/etc/ssl/private/site.key"])
        assert facts["record"]["host"] == "mail01" and facts["fsck_rc"] == 0
        assert SECRET.encode() in facts["files"]["/etc/ssl/private/site.key"][0]
        secret_heard = heard.read_bytes()
        (tmp_path / "t.img").write_bytes(b"")
        proc = run(lab.argv(1, [*ais_command("client", "plan"), "--server", plain_url, "--host", "mail01",
                                "--token", TOKEN, "--target", str(tmp_path / "t.img"), "--state",
                                str(tmp_path / "plain-state")]), check=False, timeout=60)
        assert proc.returncode == 0 and "WARNING: plain HTTP to" in proc.stderr, proc.stderr
        all_heard = heard.read_bytes()
    assert len(secret_heard) > 1 << 20  # the neighbour heard the install: the image and the packages went by
    assert TOKEN.encode() not in secret_heard and SECRET.encode() not in secret_heard
    assert TOKEN.encode() in all_heard[len(secret_heard):]  # and it does hear what crosses in clear


@pytest.mark.parametrize("server,trusted", [("good", True), ("other_ca", False)])
def test_the_agent_trusts_the_site_ca_only(site, servers, server, trusted):
    import asyncio

    from ais.agent.peers import PeerUnreachable, Wire

    async def init():
        wire = Wire(servers[server].url, "mail01", TOKEN, site_ca=site["ca"])
        await wire.open()
        try:
            return await wire.init()
        finally:
            await wire.close()

    try:
        answer, why = asyncio.run(init()), ""
    except PeerUnreachable as err:
        answer, why = None, str(err)
    if trusted:
        assert answer is not None or re.search(r": 4\d\d ", why), why  # TLS passed: the server's own answer
    else:
        assert answer is None and "certificate verify failed" in why, why
