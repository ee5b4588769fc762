"""Shared pytest fixtures, and the markers that say what a test needs.

`rpm`: the test builds or reads real RPMs (rpmbuild, the demo repository,
createrepo_c); `root`: loop devices, mounts or namespaces. Tests that use the
fixtures below are marked `rpm` here, so no test can forget it; tests that make
loop devices mark themselves `root`. `make test-unit` runs the unit tests that
need neither (pure Python, plus mke2fs images in a temporary directory).
"""

from pathlib import Path

import pytest

from ais.stream.pack import pack
from aislab.net import make_fs_image, make_tree

ROOT = Path(__file__).resolve().parent.parent
RPM_FIXTURES = {"repo_dir", "build_test_rpms"}  # and every fixture built on them


def pytest_collection_modifyitems(items):
    for item in items:
        if RPM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("rpm")


@pytest.fixture(scope="session")
def demo_kernel():
    """The demo site's kernel and initramfs (aislab.demo_kernel), built (incrementally) into build/demo-kernel."""
    from aislab.demo_kernel import build

    return build(ROOT / "build" / "demo-kernel", quiet=True)


@pytest.fixture(scope="session")
def repo_dir(demo_kernel) -> Path:
    """The demo RPM repository, built (incrementally) into build/repo once per session."""
    from aislab.demo_repo import build_repo

    out = ROOT / "build" / "repo"
    build_repo(ROOT / "packages", out, echo=lambda line: None, kernel_dir=demo_kernel.out)
    return out


@pytest.fixture(scope="session")
def bootenv() -> dict:
    """The boot environment, built (or found up to date) in build/test-bootenv once per session."""
    from aislab.qemu import TEST_BOOTENV, build_bootenv

    first = build_bootenv(TEST_BOOTENV)
    again = build_bootenv(TEST_BOOTENV)  # same inputs: nothing is built
    assert again["built"] is False and again["key"] == first["key"]
    return again


@pytest.fixture(scope="session")
def build_test_rpms(tmp_path_factory):
    """build_test_rpms({"name": spec text, ...}) -> directory of RPMs built by the real builder.

    For one-off packages a test needs (a dependency nobody provides, a failing
    scriptlet); the specs may use the demo repository's macros.
    """
    import shutil

    from aislab.demo_repo import build_repo

    def build(specs: dict[str, str]) -> Path:
        spec_dir = tmp_path_factory.mktemp("specs")
        for shared in ("ais.macros", "gen.awk"):
            shutil.copy(ROOT / "packages" / shared, spec_dir / shared)
        for name, text in specs.items():
            (spec_dir / f"{name}.spec").write_text(text)
        out = tmp_path_factory.mktemp("rpms")
        build_repo(spec_dir, out, echo=lambda line: None)
        return out

    return build


# A real ext4 image (mke2fs -d) of a tree with files, and its .aisimg (stream tests, lab tools).
@pytest.fixture(scope="session")
def small_fs(tmp_path_factory) -> tuple[Path, Path]:
    """(source tree, ext4 image of it): several MiB of data, so several chunks."""
    base = tmp_path_factory.mktemp("fs")
    src = make_tree(base / "src", random_kib=3072, text_files=150)
    return src, make_fs_image(src, base / "fs.img", 24)


@pytest.fixture(scope="session")
def small_image(small_fs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "small.aisimg"
    pack(small_fs[1], out, image_id="small-1", packages=["a-1-1.noarch", "b-2-1.noarch"])
    return out
