"""Resolution of the demo SCDs against the real demo repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.descriptors import load_site

DEMO = Path(__file__).resolve().parents[3] / "descriptors"


@pytest.fixture(scope="module")
def site(repo_dir):
    return load_site(DEMO, repo_dir)


def names(conf) -> dict[str, str]:
    return {p.name: f"{p.version}-{p.release}" for p in conf.packages}


def test_patch_level_pins_win_through_extends(site):
    assert names(site.configuration("web-1"))["libssl"] == "3.0.1-1"
    assert names(site.configuration("web-2"))["libssl"] == "3.0.1-2"
    assert site.configuration("web-1").nevras ^ site.configuration("web-2").nevras == {
        "libssl-0:3.0.1-1.x86_64", "libssl-0:3.0.1-2.x86_64"}


def test_dependencies_pulled_in_including_virtual_provide(site):
    web = names(site.configuration("web-1"))
    # php requires the virtual `webserver`, httpd provides it; httpd pulls its own deps
    assert {"php", "php-common", "httpd", "httpd-filesystem", "libpcre"} <= set(web)


def test_every_configuration_contains_its_base(site):
    base = site.configuration("base").nevras
    for conf in site.configurations:
        assert base <= conf.nevras, conf.name


def test_one_version_per_name(site):
    for conf in site.configurations:
        assert len({p.name for p in conf.packages}) == len(conf.packages)


def test_weights_are_hosts_times_reinstalls(site):
    weights = site.weights()
    assert weights["hpc"] == 6 * 12
    assert weights["web-2"] == 4 * 4
    assert weights["base"] == 0


def test_host_files_inline_and_from_source(site):
    host = next(h for h in site.hosts if h.name == "web01")
    files = {f.path: f for f in host.files}
    assert files["/etc/hostname"].content == b"web01\n"
    assert files["/etc/ais/host.conf"].mode == 0o640
    key = (DEMO / "files/web01/site.key").read_bytes()
    assert files["/etc/ssl/private/site.key"].content == key
    assert files["/etc/ssl/private/site.key"].mode == 0o600
    assert host.macs == ("52:54:00:00:00:01",)


def test_packages_read_from_real_headers(site):
    kernel = next(p for p in site.packages if p.name == "kernel")
    assert kernel.file_count > 100 and kernel.installed_size > 5 * 2**20
    assert len(kernel.digest) == 64
    postfix = next(p for p in site.packages if p.name == "postfix")
    assert postfix.scriptlets >= 2


def test_packages_from_repodata_match_their_headers(site, repo_dir):
    """Every field repodata gives equals what rpm reads from the RPM itself."""
    import rpm

    from ais.files import file_sha256

    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    assert len(site.packages) == len(list(repo_dir.rglob("*.rpm")))
    for pkg in site.packages:
        path = repo_dir / pkg.filename
        with open(path, "rb") as handle:
            hdr = ts.hdrFromFdno(handle.fileno())
        assert (pkg.name, pkg.epoch, pkg.version, pkg.release, pkg.arch) == (
            hdr[rpm.RPMTAG_NAME], hdr[rpm.RPMTAG_EPOCHNUM], hdr[rpm.RPMTAG_VERSION],
            hdr[rpm.RPMTAG_RELEASE], hdr[rpm.RPMTAG_ARCH])
        assert pkg.installed_size == hdr[rpm.RPMTAG_LONGSIZE], pkg.nevra
        assert pkg.file_count == len(hdr[rpm.RPMTAG_FILENAMES]), pkg.nevra
        assert pkg.size == path.stat().st_size and pkg.digest == file_sha256(path), pkg.nevra


def test_scriptlets_counted_for_configuration_packages(site):
    counts = {p.name: p.scriptlets for c in site.configurations for p in c.packages}
    assert counts["postfix"] >= 2 and counts["kernel"] == 0
    assert {p.nevra: p.scriptlets for p in site.packages if p.name == "postfix"} == {
        p.nevra: p.scriptlets for c in site.configurations for p in c.packages if p.name == "postfix"}


def test_file_requirement_met_from_file_lists(site):
    busybox = next(p for p in site.packages if p.name == "busybox-base")
    assert "/bin/sh" in busybox.provides
