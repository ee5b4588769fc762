"""ais.updates.signing: the site update key, signatures over updates, and pinned public keys."""

import stat

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ais.errors import UsageError
from ais.updates.records import Op, Update, UpdateRefused
from ais.updates.signing import load_or_make_key, public_hex, public_path, read_public, sign, verify

SHA = "ab" * 32


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signed(key):
    ops = (Op(action="install", name="bash", nevra="bash-0:5.2-1.x86_64", file="bash-5.2-1.x86_64.rpm", size=10,
              sha256=SHA), Op(action="erase", name="telnet"))
    return sign(Update(seq=7, group="rack-a", ops=ops, origin="admin", submitted_at=1.5), key)


def test_round_trip(key, signed):
    assert signed.signature and len(signed.signature) == 128
    assert verify(signed, public_hex(key)) is signed


def test_round_trip_through_json(key, signed):
    again = msgspec.json.decode(msgspec.json.encode(signed), type=Update)
    assert verify(again, public_hex(key)) == signed


def _changed_sha(u):
    ops = (msgspec.structs.replace(u.ops[0], sha256="cd" * 32),) + u.ops[1:]
    return msgspec.structs.replace(u, ops=ops)


FORGERIES = {
    "no signature": lambda u: msgspec.structs.replace(u, signature=None),
    "changed seq": lambda u: msgspec.structs.replace(u, seq=u.seq + 1),
    "changed group": lambda u: msgspec.structs.replace(u, group="rack-b"),
    "changed urgency": lambda u: msgspec.structs.replace(u, urgent=True),
    "changed sha256": _changed_sha,
    "dropped op": lambda u: msgspec.structs.replace(u, ops=u.ops[:1]),
    "another key's signature": lambda u: sign(u, Ed25519PrivateKey.generate()),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_verify_refuses(key, signed, forge):
    with pytest.raises(UpdateRefused):
        verify(forge(signed), public_hex(key))


def test_verify_refuses_against_another_public_key(signed):
    with pytest.raises(UpdateRefused):
        verify(signed, public_hex(Ed25519PrivateKey.generate()))


def test_load_or_make_key_makes_0600_with_pub_and_reloads(tmp_path):
    path = tmp_path / "keys" / "update-key.pem"
    made = load_or_make_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_path(path) == tmp_path / "keys" / "update-key.pem.pub"
    assert public_path(path).read_text().strip() == public_hex(made)
    again = load_or_make_key(path)
    assert public_hex(again) == public_hex(made)
    assert read_public(str(public_path(path))) == public_hex(made)


def test_load_or_make_key_never_overwrites(tmp_path):
    path = tmp_path / "update-key.pem"
    first = load_or_make_key(path)
    data = path.read_bytes()
    load_or_make_key(path)
    assert path.read_bytes() == data and public_hex(load_or_make_key(path)) == public_hex(first)


def _ec_pem():
    return generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.mark.parametrize("content", [b"not a key\n", b"", lambda: _ec_pem()], ids=["text", "empty", "ec key"])
def test_load_or_make_key_refuses_what_is_not_an_ed25519_key(tmp_path, content):
    path = tmp_path / "update-key.pem"
    path.write_bytes(content() if callable(content) else content)
    with pytest.raises(UsageError):
        load_or_make_key(path)


def test_read_public_hex_and_file(tmp_path, key):
    hexkey = public_hex(key)
    assert read_public(hexkey) == hexkey
    assert read_public(f"  {hexkey}\n") == hexkey
    f = tmp_path / "k.pub"
    f.write_text(hexkey + "\n")
    assert read_public(str(f)) == hexkey


@pytest.mark.parametrize("text", ["", "abc", "AB" * 32, "zz" * 32, "ab" * 33, "/nonexistent/key.pub"])
def test_read_public_refuses_junk(text):
    with pytest.raises(UsageError):
        read_public(text)


@pytest.mark.parametrize("content", ["junk\n", "", "AB" * 32, "ab" * 31])
def test_read_public_refuses_a_file_of_junk(tmp_path, content):
    f = tmp_path / "k.pub"
    f.write_text(content)
    with pytest.raises(UsageError):
        read_public(str(f))
