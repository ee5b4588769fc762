"""The site's update key: ed25519 signatures over updates, through `cryptography`.

What it does: `load_or_make_key(path)` reads the private key (PEM, PKCS#8) or makes one
(mode 0600, written atomically, never overwritten) and writes the public key beside it
as `<path>.pub` (hex); `sign(update, key)` returns the update with its signature;
`verify(update, public_hex)` checks it, so a peer cannot change an update's packages,
sequence number or group without the key that only the server's machine holds.
`public_hex(key)` is what agents pin (`ais agent run --update-key`).

Reads: key files. Fails with `WorldError` (a key file cannot be read or written),
`UsageError` (a key file that is not a key), `UpdateRefused` (a missing or wrong
signature). Returns keys, hex strings and signed updates.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ais.errors import UsageError, WorldError, describe_os_error
from ais.files import write_atomic
from ais.updates.records import Update, UpdateRefused, signed_bytes


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The private key at path, made (0600) with its .pub beside it when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _make_key(path)
    except OSError as err:
        raise WorldError(f"cannot read the update key: {describe_os_error(err)}") from err
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as err:
        raise UsageError(f"{path}: not a PEM private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an ed25519 key")
    return key


def _make_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, pem, mode=0o600)
        write_atomic(public_path(path), (public_hex(key) + "\n").encode(), mode=0o644)
    except OSError as err:
        raise WorldError(f"cannot write the update key: {describe_os_error(err)}") from err
    return key


def update_key_path(history: Path) -> Path:
    """Where the update key lives by default: beside the server's history database."""
    return history.with_name("update-key.pem")


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def public_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def read_public(text: str) -> str:
    """A pinned public key: 64 hex digits, or a file holding them."""
    value = text.strip()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        try:
            value = Path(text).read_text().strip()
        except OSError as err:
            raise UsageError(f"--update-key: neither 64 hex digits nor a readable file: {describe_os_error(err)}") \
                from err
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"update key {text[:80]!r}: expected 64 lower-case hex digits (an ed25519 public key)")
    return value


def sign(update: Update, key: Ed25519PrivateKey) -> Update:
    return msgspec.structs.replace(update, signature=key.sign(signed_bytes(update)).hex())


def verify(update: Update, public: str) -> Update:
    """The update if its signature is the site key's; else UpdateRefused."""
    if not update.signature:
        raise UpdateRefused(f"update {update.seq} is not signed")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(bytes.fromhex(update.signature),
                                                                       signed_bytes(update))
    except InvalidSignature:
        raise UpdateRefused(f"update {update.seq} (group {update.group}): the signature is not the site "
                            "update key's (forged or changed on the way)") from None
    return update
