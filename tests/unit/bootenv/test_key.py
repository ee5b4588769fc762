"""The boot environment's key: the same inputs give the same key; any changed input a new one.
And what it carries: the client's files, what checks a signature, what speaks TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.bootenv import elf, recipe
from ais.bootenv.apt import Deb
from ais.bootenv.build import input_key, matches, python_files
from ais.run import run


def inputs(tmp_path):
    debs = {"busybox-static": Deb("busybox-static", "1:1.35.0-4", "amd64", "a" * 64),
            "linux-image-6.1.0-57-amd64": Deb("linux-image-6.1.0-57-amd64", "6.1.192-3", "amd64", "b" * 64)}
    src = tmp_path / "cli.py"
    src.write_text("print('hello')\n")
    return debs, {"usr/lib/python3/dist-packages/ais/cli.py": src}


def key(debs, python):
    return input_key(debs, python)[0]


def test_the_same_inputs_give_the_same_key(tmp_path):
    debs, python = inputs(tmp_path)
    assert key(debs, python) == key(dict(reversed(debs.items())), python)


CHANGES = {
    "a package's version": lambda debs, py: debs.update(
        {"busybox-static": Deb("busybox-static", "1:1.36.1-1", "amd64", "a" * 64)}),
    "a package's bytes": lambda debs, py: debs.update(
        {"busybox-static": Deb("busybox-static", "1:1.35.0-4", "amd64", "c" * 64)}),
    "one more package": lambda debs, py: debs.update({"kexec-tools": Deb("kexec-tools", "1", "amd64", "d" * 64)}),
    "a client file's bytes": lambda debs, py: next(iter(py.values())).write_text("print('bye')\n"),
    "a client file's place": lambda debs, py: py.update(
        {"usr/lib/python3/dist-packages/ais/moved.py": py.pop("usr/lib/python3/dist-packages/ais/cli.py")}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_changed_input_gives_a_new_key(tmp_path, change):
    debs, python = inputs(tmp_path)
    before = key(debs, python)
    CHANGES[change](debs, python)
    assert key(debs, python) != before


def test_the_client_files_are_the_client_and_its_wheels_only():
    rels = set(python_files())
    site = "usr/lib/python3/dist-packages"
    assert {f"{site}/ais/cli.py", f"{site}/ais/client/ais-boot", f"{site}/ais/client/steps.py",
            f"{site}/ais/stream/writer.py", f"{site}/msgspec/__init__.py", f"{site}/zstandard/__init__.py"} <= rels
    rooms = {r.split("/")[5] for r in rels if r.startswith(f"{site}/ais/") and r.count("/") > 5}
    assert rooms == {"client", "stream"}  # no planner, cache, server, descriptors, repo, calibrate, bootenv


def test_the_pinned_site_key_is_an_input(tmp_path):
    debs, python = inputs(tmp_path)
    keys = {input_key(debs, python, site)[0] for site in (None, "a" * 64, "b" * 64)}
    assert len(keys) == 3


def test_the_boot_environment_carries_what_checks_a_signature():
    rels = set(python_files())
    site = "usr/lib/python3/dist-packages"
    assert {f"{site}/ais/sitekey.py", f"{site}/cryptography/hazmat/bindings/_rust.abi3.so",
            f"{site}/_cffi_backend.cpython-311-x86_64-linux-gnu.so"} <= rels


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB{}\n-----END CERTIFICATE-----\n"


def test_the_pinned_site_ca_is_an_input(tmp_path):
    debs, python = inputs(tmp_path)
    keys = {input_key(debs, python, None, ca)[0] for ca in (None, CA_PEM.format("a"), CA_PEM.format("b"))}
    assert len(keys) == 3
    # a key and a CA are separate inputs: the same text in the other place is another boot environment
    assert input_key(debs, python, "a" * 64, None)[0] != input_key(debs, python, None, "a" * 64)[0]
    assert "no site CA" in input_key(debs, python)[1] and "site CA " in input_key(debs, python, None, CA_PEM)[1]


@pytest.mark.parametrize("module", ["_ssl", "_hashlib"])  # HTTPS; OpenSSL's sha256 for the chunks
def test_the_boot_environment_carries_pythons_ssl_and_the_libraries_it_needs(module):
    path = f"usr/lib/python3.11/lib-dynload/{module}.cpython-311-x86_64-linux-gnu.so"
    assert any(matches(path, p) for p in recipe.FILES)
    assert not any(matches(path, p) for p in recipe.PYTHON_EXCLUDED)
    host_module = Path("/") / path  # the builder's own Debian Python: which package holds each soname
    if not host_module.exists():
        pytest.skip(f"no {host_module} on this machine to read its DT_NEEDED from")
    needed = set(elf.needed(host_module)) - {"libc.so.6"}
    assert "libcrypto.so.3" in needed
    for soname in needed:
        owner = run(["dpkg", "-S", f"*/{soname}"]).stdout.split(":", 1)[0]
        assert owner in recipe.PACKAGES, f"{soname} comes from {owner}, which the recipe does not carry"
