"""aislab.demo_repo on a few real specs: real rpmbuild and createrepo_c, tmp dirs."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ais.errors import BuildError, UsageError
from aislab.demo_repo import build_repo, default_out
from ais.run import run

PACKAGES = Path(__file__).resolve().parents[2] / "packages"
SMALL = ("filesystem.spec", "setup.spec", "make.spec")

# The names other engineers' descriptors use: a contract.
CONTRACT = {
    "filesystem", "busybox-base", "setup", "libc", "kernel", "rpm-tools", "logrotate",
    "httpd", "httpd-filesystem", "mod_ssl", "php", "php-common", "libpcre", "libssl",
    "postgresql-server", "postgresql-libs", "postgresql-contrib",
    "openmpi", "fftw", "blas", "lapack", "gcc-runtime", "slurm-client",
    "xorg-fonts", "gtk3", "firefox", "postfix", "dovecot", "collectd", "nagios-plugins",
    "python3", "perl", "git", "make", "gcc",
}


@pytest.fixture
def specs(tmp_path):
    """A specs dir holding three small specs plus the shared macros and generator."""
    d = tmp_path / "specs"
    d.mkdir()
    for name in (*SMALL, "ais.macros", "gen.awk"):
        shutil.copy(PACKAGES / name, d / name)
    return d


def quiet(line):
    pass


def rpm_names(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "RPMS" / "x86_64").glob("*.rpm"))


def test_builds_rpms_and_repodata(specs, tmp_path):
    out = tmp_path / "repo"
    result = build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    assert sorted(result.built) == sorted(SMALL)
    assert rpm_names(out) == [
        "filesystem-3.18-1.x86_64.rpm", "make-4.3-1.x86_64.rpm", "setup-2.14.3-1.x86_64.rpm"]
    assert result.rpms == [f"RPMS/x86_64/{n}" for n in rpm_names(out)]
    assert (out / "repodata" / "repomd.xml").is_file()
    assert not (tmp_path / "work" / "make").exists()  # work dir removed after success
    qf = run(["rpm", "-qp", "--qf", "%{NAME} %{BUILDTIME} %{BUILDHOST}\\n",
              out / "RPMS/x86_64/make-4.3-1.x86_64.rpm"]).stdout
    assert qf == "make 1700000000 ais-build\n"


def test_second_run_is_a_noop_and_edits_rebuild_one_spec(specs, tmp_path):
    out = tmp_path / "repo"
    build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "RPMS" / "x86_64").glob("*.rpm")}

    again = build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    assert again.built == [] and sorted(again.skipped) == sorted(SMALL)
    assert not again.repodata_updated
    assert again.seconds < 1.0

    with open(specs / "make.spec", "a") as f:
        f.write("# a change\n")
    edited = build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    assert edited.built == ["make.spec"]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "RPMS" / "x86_64").glob("*.rpm")}
    assert after["setup-2.14.3-1.x86_64.rpm"] == before["setup-2.14.3-1.x86_64.rpm"]
    assert edited.repodata_updated


def test_rebuild_is_byte_identical(specs, tmp_path):
    one = build_repo(specs, tmp_path / "one", work=tmp_path / "w1", echo=quiet)
    build_repo(specs, tmp_path / "two", work=tmp_path / "w2", echo=quiet)
    for rel in one.rpms:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


def test_missing_rpm_is_rebuilt_and_removed_spec_is_pruned(specs, tmp_path):
    out = tmp_path / "repo"
    build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    (out / "RPMS/x86_64/setup-2.14.3-1.x86_64.rpm").unlink()
    (specs / "make.spec").unlink()
    result = build_repo(specs, out, work=tmp_path / "work", echo=quiet)
    assert result.built == ["setup.spec"]
    assert result.removed == ["RPMS/x86_64/make-4.3-1.x86_64.rpm"]
    assert rpm_names(out) == ["filesystem-3.18-1.x86_64.rpm", "setup-2.14.3-1.x86_64.rpm"]


def test_broken_spec_raises_build_error_naming_it(specs, tmp_path):
    (specs / "broken.spec").write_text("Name: broken\n%install\nfalse\n")
    with pytest.raises(BuildError, match="broken.spec"):
        build_repo(specs, tmp_path / "repo", work=tmp_path / "work", echo=quiet)


def test_no_specs_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="no \\*.spec"):
        build_repo(tmp_path, tmp_path / "repo", echo=quiet)


def test_package_set_honours_the_name_contract():
    argv = ["rpmspec", "-q", "--load", PACKAGES / "ais.macros", "--define", f"ais_specs {PACKAGES}",
            "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n", *sorted(PACKAGES.glob("*.spec"))]
    pairs = [line.split() for line in run(argv).stdout.splitlines()]
    names = {n for n, _ in pairs}
    assert CONTRACT <= names
    versions = {}
    for n, vr in pairs:
        versions.setdefault(n, []).append(vr)
    assert sorted(versions["libssl"]) == ["3.0.1-1", "3.0.1-2"]
    assert sorted(versions["python3"]) == ["3.11.2-1", "3.11.2-2"]
    assert versions["kernel"] == ["6.1.0-1"]


SCALED_SPEC = """\
Name: scaled
Version: 1
Release: 1
Summary: scale test
License: MIT
BuildArch: x86_64
AutoReqProv: no
%description
scale test
%install
%ais_blob /usr/lib/libscaled.so 30000 91
%ais_text /etc/scaled.conf 5000 92
%ais_tree /usr/share/scaled 12 800 93 .txt
%files
/usr/lib/libscaled.so
/etc/scaled.conf
/usr/share/scaled
"""


def installed(rpm: Path) -> tuple[int, int]:
    """Installed size and regular-file count of one RPM file."""
    size = int(run(["rpm", "-qp", "--qf", "%{SIZE}", rpm]).stdout)
    modes = run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms}\\n]", rpm]).stdout.split()
    return size, sum(1 for m in modes if m.startswith("-"))


@pytest.fixture
def scaled_specs(tmp_path):
    d = tmp_path / "scaled-specs"
    d.mkdir()
    for name in ("ais.macros", "gen.awk"):
        shutil.copy(PACKAGES / name, d / name)
    (d / "scaled.spec").write_text(SCALED_SPEC)
    return d


def test_scale_two_doubles_installed_size_and_files(scaled_specs, tmp_path):
    rpm = "RPMS/x86_64/scaled-1-1.x86_64.rpm"
    one = build_repo(scaled_specs, tmp_path / "x1", work=tmp_path / "w1", echo=quiet)
    two = build_repo(scaled_specs, tmp_path / "x2", work=tmp_path / "w2", scale=2, echo=quiet)
    assert one.rpms == two.rpms == [rpm]  # same name, version, release
    size1, files1 = installed(tmp_path / "x1" / rpm)
    size2, files2 = installed(tmp_path / "x2" / rpm)
    assert files1 == 14 and files2 == 2 + 2 * 12  # trees get twice the files
    assert 1.9 < size2 / size1 < 2.1
    assert json.loads((tmp_path / "x2" / ".stamps" / "scaled.json").read_text())["scale"] == 2


def test_scale_is_part_of_the_build_key(scaled_specs, tmp_path):
    out = tmp_path / "repo"
    build_repo(scaled_specs, out, work=tmp_path / "w", echo=quiet)
    assert build_repo(scaled_specs, out, work=tmp_path / "w", echo=quiet).built == []
    # the same directory at another scale: everything is rebuilt, nothing mixes
    assert build_repo(scaled_specs, out, work=tmp_path / "w", scale=2, echo=quiet).built == ["scaled.spec"]
    assert build_repo(scaled_specs, out, work=tmp_path / "w", scale=2, echo=quiet).built == []


def test_scale_one_is_the_unscaled_generator(tmp_path):
    # gen.awk without a scale (today's macros) and with scale=1 write the same bytes
    for extra, root in (([], tmp_path / "plain"), (["-v", "scale=1"], tmp_path / "one")):
        for mode, size in (("text", 3000), ("blob", 3000), ("tree", 300)):
            run(["awk", "-v", f"mode={mode}", "-v", f"root={root}", "-v", f"path=/{mode}", "-v", f"size={size}",
                 "-v", "seed=7", "-v", "count=5", *extra, "-f", PACKAGES / "gen.awk"])
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*") if p.is_file())
    assert len(plain) == 7
    for rel in plain:
        assert (tmp_path / "plain" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes(), rel


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, True])
def test_bad_scale_is_a_usage_error(scaled_specs, tmp_path, bad):
    with pytest.raises(UsageError, match="scale"):
        build_repo(scaled_specs, tmp_path / "repo", scale=bad, echo=quiet)


def test_scaled_repository_has_its_own_directory():
    assert default_out(Path("build/repo"), 1) == Path("build/repo")
    assert default_out(Path("build/repo"), 8) == Path("build/repo-x8")


# kernel.spec ships the demo kernel of a directory (aislab.demo_kernel writes it); here a stand-in.
FAKE_RELEASE = "9.9.9-test"


def fake_kernel_dir(path: Path, release: str = FAKE_RELEASE, initrd: bytes = b"initrd one") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "release").write_text(f"{release}\n")
    (path / f"vmlinuz-{release}").write_bytes(b"kernel bytes " * 1000)
    (path / f"initrd.img-{release}").write_bytes(initrd)
    return path


@pytest.fixture
def kernel_specs(tmp_path):
    d = tmp_path / "kernel-specs"
    d.mkdir()
    for name in ("kernel.spec", "make.spec", "ais.macros", "gen.awk"):
        shutil.copy(PACKAGES / name, d / name)
    return d


def rpm_files(rpm: Path) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256) of every file of an RPM."""
    listing = run(["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILESIZES} %{FILEDIGESTS}\\n]", rpm]).stdout
    return {p: (int(size), digest) for p, size, digest in (line.split(" ") for line in listing.splitlines())}


@pytest.mark.parametrize("scale", [1, 2])
def test_the_kernel_package_ships_the_kernel_directory_unscaled(kernel_specs, tmp_path, scale):
    kernel_dir = fake_kernel_dir(tmp_path / "kernel")
    out = tmp_path / "repo"
    build_repo(kernel_specs, out, work=tmp_path / "w", scale=scale, echo=quiet, kernel_dir=kernel_dir)
    files = rpm_files(out / "RPMS/x86_64/kernel-6.1.0-1.x86_64.rpm")
    for name in (f"vmlinuz-{FAKE_RELEASE}", f"initrd.img-{FAKE_RELEASE}"):
        data = (kernel_dir / name).read_bytes()
        assert files[f"/boot/{name}"] == (len(data), hashlib.sha256(data).hexdigest())
    assert files["/boot/System.map-6.1.0-1"][0] == 400000 * scale  # the filler scales
    assert not any(p.startswith(f"/lib/modules/{FAKE_RELEASE}") for p in files)


def test_a_new_kernel_rebuilds_the_kernel_package_only(kernel_specs, tmp_path):
    kernel_dir = fake_kernel_dir(tmp_path / "kernel")
    out = tmp_path / "repo"
    first = build_repo(kernel_specs, out, work=tmp_path / "w", echo=quiet, kernel_dir=kernel_dir)
    assert sorted(first.built) == ["kernel.spec", "make.spec"]
    assert build_repo(kernel_specs, out, work=tmp_path / "w", echo=quiet, kernel_dir=kernel_dir).built == []
    fake_kernel_dir(kernel_dir, initrd=b"initrd two")
    again = build_repo(kernel_specs, out, work=tmp_path / "w", echo=quiet, kernel_dir=kernel_dir)
    assert again.built == ["kernel.spec"] and again.skipped == ["make.spec"]
    files = rpm_files(out / "RPMS/x86_64/kernel-6.1.0-1.x86_64.rpm")
    assert files[f"/boot/initrd.img-{FAKE_RELEASE}"][1] == hashlib.sha256(b"initrd two").hexdigest()


def no_initrd(path: Path) -> Path:
    fake_kernel_dir(path)
    (path / f"initrd.img-{FAKE_RELEASE}").unlink()
    return path


BAD_KERNEL_DIRS = {
    "no directory": (lambda path: path, "does not hold one.*aislab.demo_kernel"),
    "no initramfs": (no_initrd, "does not hold one.*aislab.demo_kernel"),
    "a release named like the filler": (lambda path: fake_kernel_dir(path, "6.1.0-1"), "bad kernel release"),
}


@pytest.mark.parametrize("case", list(BAD_KERNEL_DIRS))
def test_a_kernel_directory_without_a_usable_kernel_fails_naming_the_spec(kernel_specs, tmp_path, case):
    make, message = BAD_KERNEL_DIRS[case]
    with pytest.raises(BuildError, match=f"(?s)kernel.spec.*{message}"):
        build_repo(kernel_specs, tmp_path / "repo", work=tmp_path / "w", echo=quiet,
                   kernel_dir=make(tmp_path / "kernel"))
    assert not list((tmp_path / "repo").glob("RPMS/*/kernel-*.rpm"))
