"""The site key: its files and their modes, no overwrite, rotation; the signed manifest; the signed plan
as the client checks it (each way a plan can be wrong is refused, with its own message)."""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ais import sitekey
from ais.cli import main
from ais.client.api import Api
from ais.errors import BuildError, ClientError, UsageError
from ais.server.answers import Blob, HttpError, Json
from ais.server.routes import Routes, signed_plan
from aislab.canned import CannedServer

# ------------------------------------------------------------------ the key files


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_the_pair_with_its_modes(tmp_path):
    public, kept = sitekey.init(tmp_path)
    assert kept == []
    assert mode(tmp_path / "site") == 0o700
    assert mode(tmp_path / "site" / "site-key.pem") == 0o600
    assert mode(tmp_path / "site" / "site-key.pub") == 0o644
    assert (tmp_path / "site" / "site-key.pub").read_text() == public + "\n"
    assert sitekey.HEX64.fullmatch(public)
    assert (tmp_path / "site" / "site-key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert sitekey.public_hex(sitekey.load_private(tmp_path)) == public == sitekey.read_public(tmp_path)


def test_init_refuses_to_replace_a_key(tmp_path):
    sitekey.init(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "site").iterdir()}
    with pytest.raises(UsageError, match="already has a key.*--rotate"):
        sitekey.init(tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "site").iterdir()} == before


def test_rotation_keeps_the_old_pair(tmp_path):
    old, _ = sitekey.init(tmp_path)
    old_pem = (tmp_path / "site" / "site-key.pem").read_bytes()
    new, kept = sitekey.init(tmp_path, rotate=True)
    assert new != old and sitekey.read_public(tmp_path) == new
    assert sorted(p.suffix for p in kept) == [".pem", ".pub"]
    pem = next(p for p in kept if p.suffix == ".pem")
    assert pem.read_bytes() == old_pem and mode(pem) == 0o600
    assert next(p for p in kept if p.suffix == ".pub").read_text() == old + "\n"
    assert pem.name.startswith("site-key.20") and pem.name.endswith("Z.pem")


def test_two_rotations_in_one_second_keep_both_old_pairs(tmp_path):
    sitekey.init(tmp_path)
    sitekey.init(tmp_path, rotate=True)
    sitekey.init(tmp_path, rotate=True)
    assert len(list((tmp_path / "site").glob("site-key.*.pem"))) == 2


def test_the_cli_init_refuses_with_exit_2_and_show_prints_the_key(tmp_path, capsys):
    assert main(["site", "init", "--cache", str(tmp_path)]) == 0
    public = capsys.readouterr().out.strip()
    assert main(["site", "init", "--cache", str(tmp_path)]) == 2
    assert "already has a key" in capsys.readouterr().err
    assert main(["site", "show", "--cache", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == public
    assert main(["site", "show", "--cache", str(tmp_path / "none")]) == 1
    assert "run `ais site init`" in capsys.readouterr().err


BAD_PINS = [
    ("short hex", "ab" * 31, "neither 64 hex digits nor a readable file"),
    ("upper case", "AB" * 32, "neither 64 hex digits nor a readable file"),
    ("missing file", "/nonexistent/site-key.pub", "neither 64 hex digits nor a readable file"),
    ("a file holding something else", "FILE", "expected 64 lower-case hex digits"),
]


@pytest.mark.parametrize("name, text, message", BAD_PINS, ids=[r[0] for r in BAD_PINS])
def test_a_pinned_key_that_is_not_a_key_is_bad_input(name, text, message, tmp_path):
    (tmp_path / "key").write_text("not a key\n")
    with pytest.raises(UsageError, match=message):
        sitekey.parse_public(text.replace("FILE", str(tmp_path / "key")))


def test_a_pinned_key_from_a_file(tmp_path):
    public, _ = sitekey.init(tmp_path)
    assert sitekey.parse_public(str(tmp_path / "site" / "site-key.pub")) == public == sitekey.parse_public(public)


# ------------------------------------------------------------------ the manifest

def a_manifest() -> dict:
    image = {"key": "base", "packages": ["a-1-1.noarch"], "file": "images/x.aisimg", "stored_bytes": 10,
             "fs_bytes": 4096, "chunks": 1, "header_sha256": "a" * 64}
    return {"format": 1, "generation": 7, "published_at": "2026-01-01T00:00:00+00:00", "plan": None,
            "images": {"b" * 64: image}, "configurations": {"mail": {"image": "b" * 64, "remainder": [],
                                                                   "predicted_seconds": 1.5}}}


KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PUBLIC = sitekey.public_hex(KEY)


def changed(path: tuple, value):
    def edit(m):
        node = m
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return m
    return edit


MANIFEST_ROWS = [
    ("unsigned", lambda m: {k: v for k, v in m.items() if k != "signature"}, "is not signed"),
    ("signed by another key", lambda m: sitekey.sign_manifest(m, OTHER), "signed by key .*not by the site key"),
    ("one image header hash changed", changed(("images", "b" * 64, "header_sha256"), "c" * 64),
     "does not match its content"),
    ("a configuration moved to another image", changed(("configurations", "mail", "image"), None),
     "does not match its content"),
    ("an older generation under a newer signature", changed(("generation",), 6), "does not match its content"),
    ("a signature that is not hex", changed(("signature", "ed25519"), "zz" * 64), "does not match its content"),
]


def test_a_signed_manifest_verifies():
    sitekey.verify_manifest(sitekey.sign_manifest(a_manifest(), KEY), PUBLIC)


@pytest.mark.parametrize("name, edit, message", MANIFEST_ROWS, ids=[r[0] for r in MANIFEST_ROWS])
def test_a_wrong_manifest_is_refused(name, edit, message):
    manifest = edit(sitekey.sign_manifest(a_manifest(), KEY))
    with pytest.raises(BuildError, match=message):
        sitekey.verify_manifest(manifest, PUBLIC)


def test_the_signature_covers_the_manifest_as_its_contract_reads_it():
    """Defaults filled in when read back (raw_bytes, cost, ...) do not break the signature."""
    from ais.contracts import Manifest, decode, to_builtins

    signed = sitekey.sign_manifest(a_manifest(), KEY)
    read_back = to_builtins(decode(json.dumps(signed, indent=1), Manifest, "m", BuildError))
    assert read_back["images"]["b" * 64]["raw_bytes"] == 0
    sitekey.verify_manifest(read_back, PUBLIC)


# ------------------------------------------------------------------ plans: the server's side

def test_a_malformed_nonce_is_refused_with_400():
    routes = Routes(SimpleNamespace(history=SimpleNamespace(last_id=lambda: 0)))
    for nonce in ("", "0" * 31, "G" * 32, "0" * 33, "0" * 31 + "\n"):
        with pytest.raises(HttpError) as err:
            routes.plan({"X-AIS-Nonce": nonce}, "mail01")
        assert err.value.status == 400 and "X-AIS-Nonce must be 32 lower-case hex digits" in err.value.message


def test_the_server_signs_the_exact_body_over_the_nonce():
    nonce = sitekey.new_nonce()
    answer = signed_plan({"host": "mail01"}, KEY, nonce)
    assert isinstance(answer, Blob) and json.loads(answer.data) == {"host": "mail01"}
    sitekey.verify_plan(PUBLIC, nonce, answer.data, answer.headers["X-AIS-Signature"])
    assert answer.headers["X-AIS-Site-Key"] == PUBLIC and answer.headers["X-AIS-Nonce"] == nonce


@pytest.mark.parametrize("key, nonce", [(None, "0" * 32), (KEY, None)], ids=["no site key", "no nonce"])
def test_the_server_answers_unsigned_without_a_key_or_a_nonce(key, nonce):
    assert signed_plan({"host": "mail01"}, key, nonce) == Json(200, {"host": "mail01"})


# ------------------------------------------------------------------ plans: the client's side, over HTTP

PLAN = {"format": 1, "host": "mail01", "scd": "mail", "generation": 7, "configuration": [], "image": None,
        "fallback": None, "packages": [], "order_cycles": [], "files": [], "rpm_keys": [],
        "predicted_seconds": {"total": 1.0, "source": "model", "image": 0.0, "rpm": 1.0, "host_files": 0.0,
                              "finish": 0.0}}
BODY = json.dumps(PLAN, sort_keys=True).encode() + b"\n"
OLD_NONCE = "0" * 32


def signed(key, nonce, body=BODY, signer=None):
    return {"X-AIS-Signature": sitekey.sign_plan(key, nonce, body),
            "X-AIS-Site-Key": signer or sitekey.public_hex(key), "X-AIS-Nonce": nonce}


# name -> answer(nonce of the request) = (body, headers)
ANSWERS = {
    "signed by the site key": lambda n: (BODY, signed(KEY, n)),
    "signed by another key": lambda n: (BODY, signed(OTHER, n)),
    "not signed": lambda n: (BODY, {}),
    "replayed (signed over another request's nonce)": lambda n: (BODY, signed(KEY, OLD_NONCE)),
    "body changed by one byte": lambda n: (BODY.replace(b'"generation": 7', b'"generation": 8'), signed(KEY, n)),
    "malformed signature header": lambda n: (BODY, {"X-AIS-Signature": "not-a-signature"}),
    "signature of another key claimed as the site key's": lambda n: (BODY, signed(OTHER, n, signer=PUBLIC)),
}
REFUSED = [
    ("signed by another key", "signed by another key"),
    ("not signed", "is not signed"),
    ("replayed (signed over another request's nonce)", "a replayed plan"),
    ("body changed by one byte", "changed on the way"),
    ("malformed signature header", "not an ed25519 signature"),
    ("signature of another key claimed as the site key's", "not the pinned site key's"),
]


@pytest.fixture()
def server():
    """A plan server on loopback answering as `server.answer` says; it records the nonces it was sent."""
    state = SimpleNamespace(answer=None, nonces=[])

    def respond(headers) -> tuple[bytes, dict]:
        nonce = headers.get("X-AIS-Nonce")
        state.nonces.append(nonce)
        body, more = state.answer(nonce)
        return body, {"Content-Type": "application/json", **more}

    httpd = CannedServer(answer=respond)
    state.url = httpd.url
    yield state
    httpd.close()


def test_a_plan_signed_by_the_site_key_is_taken(server):
    server.answer = ANSWERS["signed by the site key"]
    assert Api(server.url, "t", retries=1, site_key=PUBLIC).plan("mail01") == PLAN
    assert sitekey.NONCE.fullmatch(server.nonces[0])


def test_each_request_has_a_fresh_nonce(server):
    server.answer = ANSWERS["signed by the site key"]
    api = Api(server.url, "t", retries=1, site_key=PUBLIC)
    api.plan("mail01")
    api.plan("mail01")
    assert len(set(server.nonces)) == 2


@pytest.mark.parametrize("answer, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_wrong_plan_is_refused_with_its_message(server, answer, message):
    server.answer = ANSWERS[answer]
    with pytest.raises(ClientError, match=message) as err:
        Api(server.url, "t", retries=1, site_key=PUBLIC).plan("mail01")
    assert "nothing was written" in str(err.value)


def test_without_a_pinned_key_the_plan_is_taken_and_the_client_says_it_is_not_verified(server, caplog):
    server.answer = ANSWERS["not signed"]
    assert Api(server.url, "t", retries=1).plan("mail01") == PLAN
    assert "the plan is not verified: no site key pinned" in caplog.text
