"""The site key: one ed25519 key per site that signs the published manifest and every host plan.

What it does: `init(cache)` makes the key pair `CACHE/site/site-key.pem` (private, PKCS#8 PEM,
mode 0600, in a 0700 directory) and `CACHE/site/site-key.pub` (the raw public key as 64 hex
digits), and refuses to replace one unless asked to rotate (the old pair is kept as
`site-key.<UTC time>.pem/.pub`). `load_private(cache)` and `read_public(cache)` read them back
(None when the site has no key). The signatures, through `cryptography`:

- the manifest: `sign_manifest(manifest, key)` adds `"signature": {"key": HEX, "ed25519": HEX}`
  over `manifest_bytes(manifest)`, the canonical JSON of the manifest (as its contract
  `ais.contracts.Manifest` reads it, defaults filled in) without that field, so every image
  header's sha256 it lists is covered; `verify_manifest(manifest, public)` checks it.
- a host plan: `sign_plan(key, nonce, body)` signs b"ais-plan-v1\\n" + nonce + b"\\n" + the
  exact body bytes the server sends; `verify_plan(public, nonce, body, signature)` is the
  client's check, made before the body is decoded. The nonce is fresh per request
  (`new_nonce()`, 32 hex digits), so a plan captured earlier cannot be replayed.

`parse_public(text)` reads a pinned public key given as 64 hex digits or a file holding them
(`--site-key HEX|FILE`). Only the server's machine (the cache) holds the private half;
clients pin the public half (docs/server.md, "Trust model").

Reads: the key files. Fails with `UsageError` (a key exists and no rotation was asked for; a
key file or pinned key that is not a key), `WorldError` (a key file cannot be read or
written), `BuildError` (a manifest unsigned or wrongly signed), `ClientError` (a plan
unsigned or wrongly signed). Returns keys, hex strings, signed documents.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from typing import TYPE_CHECKING

import msgspec

from ais.contracts import Manifest
from ais.errors import AisError, BuildError, ClientError, UsageError, WorldError, describe_os_error
from ais.files import set_aside, write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# `cryptography` is imported by the functions that sign or check, not here: `ais client` loads this
# module for its constants and `parse_public` on every plan, and cryptography only with a pinned key.

SITE_DIR = "site"
PRIVATE = "site-key.pem"
PUBLIC = "site-key.pub"
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
NONCE = re.compile(r"[0-9a-f]{32}")
NONCE_HEADER = "X-AIS-Nonce"
SIGNER_HEADER = "X-AIS-Site-Key"
SIGNATURE_HEADER = "X-AIS-Signature"
PLAN_DOMAIN = b"ais-plan-v1\n"
MANIFEST_DOMAIN = b"ais-manifest-v1\n"


# ------------------------------------------------------------------ the key files

def site_dir(cache: str | os.PathLike) -> Path:
    return Path(cache) / SITE_DIR


def private_path(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / PRIVATE


def public_path(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / PUBLIC


def public_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def init(cache: str | os.PathLike, *, rotate: bool = False) -> tuple[str, list[Path]]:
    """Make the site key pair; (its public hex, the files the old pair was kept as when rotating)."""
    pem, pub = private_path(cache), public_path(cache)
    exists = pem.exists() or pub.exists()
    if exists and not rotate:
        raise UsageError(f"the site already has a key ({pem}); nothing was changed. To replace it run "
                         "`ais site init --rotate` (docs/server.md, \"Rotating the site key\")")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    kept: list[Path] = []
    try:
        site_dir(cache).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(site_dir(cache), 0o700)
        if exists:
            kept = set_aside([pem, pub], "site-key")
        write_atomic(pem, data, mode=0o600)
        write_atomic(pub, (public_hex(key) + "\n").encode(), mode=0o644)
    except OSError as err:
        raise WorldError(f"cannot write the site key in {site_dir(cache)}: {describe_os_error(err)}") from err
    return public_hex(key), kept


def read_key_file(path: Path, what: str, *, text: bool = False) -> bytes | str | None:
    """A key file's bytes (its text when `text`), None when it does not exist; WorldError naming it
    when it cannot be read (or is not text)."""
    try:
        data = path.read_bytes()
        return data.decode() if text else data
    except FileNotFoundError:
        return None
    except OSError as err:
        raise WorldError(f"cannot read {what}: {describe_os_error(err)}") from err
    except UnicodeDecodeError as err:
        raise WorldError(f"cannot read {what} {path}: {err}") from err


def load_private(cache: str | os.PathLike) -> Ed25519PrivateKey | None:
    """The site's private key, or None when the site has none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = private_path(cache)
    data = read_key_file(path, "the site key")
    if data is None:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{path}: not a PEM private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an ed25519 key")
    return key


def read_public(cache: str | os.PathLike) -> str | None:
    """The site's public key (hex) from site-key.pub, or None when the site has none."""
    path = public_path(cache)
    text = read_key_file(path, "the site's public key", text=True)
    if text is None:
        return None
    value = text.strip()
    if not HEX64.fullmatch(value):
        raise UsageError(f"{path}: expected 64 lower-case hex digits (an ed25519 public key)")
    return value


def parse_public(text: str, what: str = "--site-key") -> str:
    """A pinned public key: 64 hex digits, or a file holding them."""
    value = text.strip()
    if not HEX64.fullmatch(value):
        try:
            value = Path(text).read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{what}: neither 64 hex digits nor a readable file: {err}") from err
    if not HEX64.fullmatch(value):
        raise UsageError(f"{what} {text[:80]!r}: expected 64 lower-case hex digits (an ed25519 public key)")
    return value


def verifies(public: str, signature: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(bytes.fromhex(signature), message)
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------ the manifest

def manifest_bytes(manifest: dict) -> bytes:
    """What the manifest's signature covers: its canonical JSON, as its contract reads it
    (defaults filled in), without the signature field."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    try:
        doc = msgspec.convert(unsigned, Manifest)
    except (msgspec.ValidationError, AisError) as err:
        raise BuildError(f"cannot sign or check a manifest that breaks its contract: {err}") from err
    return MANIFEST_DOMAIN + msgspec.json.encode(doc, order="sorted")


def sign_manifest(manifest: dict, key: Ed25519PrivateKey) -> dict:
    signature = key.sign(manifest_bytes(manifest)).hex()
    return {**manifest, "signature": {"key": public_hex(key), "ed25519": signature}}


def verify_manifest(manifest: dict, public: str, where: str = "the manifest") -> None:
    """Nothing if the manifest carries a good signature by `public`; BuildError saying what is wrong."""
    generation = manifest.get("generation", 0)
    what = f"{where} (generation {generation})"
    signature = manifest.get("signature")
    hint = "; run `ais rebuild` to publish a manifest signed with the site key"
    if not isinstance(signature, dict):
        raise BuildError(f"{what} is not signed, but the site has a key (CACHE/site/site-key.pub){hint}")
    if signature.get("key") != public:
        raise BuildError(f"{what} is signed by key {str(signature.get('key'))[:16]}..., not by the site key "
                         f"{public[:16]}... (rotated? forged?){hint}")
    if not (isinstance(signature.get("ed25519"), str) and HEX128.fullmatch(signature["ed25519"])
            and verifies(public, signature["ed25519"], manifest_bytes(manifest))):
        raise BuildError(f"{what}: its signature does not match its content (changed after it was signed: "
                         "an image, a header hash, a configuration?); refusing it")


def manifest_signer(manifest: dict) -> str | None:
    """The key a manifest says it is signed by (not checked), or None."""
    signature = manifest.get("signature")
    return signature.get("key") if isinstance(signature, dict) else None


# ------------------------------------------------------------------ host plans

def new_nonce() -> str:
    return secrets.token_hex(16)


def plan_message(nonce: str, body: bytes) -> bytes:
    return PLAN_DOMAIN + nonce.encode() + b"\n" + body


def sign_plan(key: Ed25519PrivateKey, nonce: str, body: bytes) -> str:
    return key.sign(plan_message(nonce, body)).hex()


def verify_plan(public: str, nonce: str, body: bytes, signature: str | None, *, signer: str | None = None,
                answered: str | None = None, what: str = "the plan") -> None:
    """Nothing if `signature` (the X-AIS-Signature header) is the site key's over this request's nonce
    and these exact body bytes; ClientError naming what is wrong otherwise.

    `signer` (X-AIS-Site-Key) and `answered` (the X-AIS-Nonce the answer echoes) are what the answer
    claims; they are not trusted, only used to say why a signature that does not verify is refused."""
    if signature is None or not signature.strip():
        raise ClientError(f"{what} is not signed (no {SIGNATURE_HEADER} header), but this client pins the site "
                          f"key {public[:16]}...: refusing it (a server without the site key, or someone else "
                          "answering on the boot network); nothing was written")
    signature = signature.strip()
    if not HEX128.fullmatch(signature):
        raise ClientError(f"{what}: the {SIGNATURE_HEADER} header is not an ed25519 signature (128 hex digits): "
                          f"{signature[:40]!r}; refusing it, nothing was written")
    if verifies(public, signature, plan_message(nonce, body)):
        return
    if signer and signer.strip() != public:
        why = (f"it is signed by another key ({signer.strip()[:16]}...), not the pinned site key "
               f"{public[:16]}...")
    elif answered and answered.strip() != nonce:
        why = (f"it answers another request (nonce {answered.strip()[:32]}, this request's is {nonce}): "
               "a replayed plan")
    else:
        why = (f"its signature is not the pinned site key's ({public[:16]}...) over this request and this body: "
               "changed on the way, replayed, or signed by another key")
    raise ClientError(f"{what} is refused: {why}; nothing was written")
