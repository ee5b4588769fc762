"""Host files: owners from the TARGET's passwd/group, atomic writes with exact mode, refusals."""

import os
import stat

import pytest

from ais.client.hostfiles import make_parents, read_ids, resolve, safe_path
from ais.files import write_atomic
from ais.errors import ClientError


@pytest.fixture()
def root(tmp_path):
    etc = tmp_path / "root" / "etc"
    etc.mkdir(parents=True)
    # ids that exist nowhere on the machine running the tests: resolution must read the target
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nmailer:x:4321:4322::/var/mail:/bin/false\n")
    (etc / "group").write_text("root:x:0:\nmailgrp:x:4322:\n")
    return tmp_path / "root"


def test_ids_come_from_the_target(root):
    users, groups = read_ids(root, "passwd"), read_ids(root, "group")
    assert resolve("mailer", users, "owner", root) == 4321
    assert resolve("mailgrp", groups, "group", root) == 4322
    assert resolve("1234", users, "owner", root) == 1234
    with pytest.raises(ClientError, match="'postfix' is not in the target's /etc/passwd"):
        resolve("postfix", users, "owner", root)


def test_atomic_write_mode_owner_and_parents(root):
    final = safe_path(str(root), "/etc/mail/deep/secret.key")
    make_parents(str(root), final)
    write_atomic(final, b"secret\n", 0o640, 4321, 4322)
    st = os.stat(final)
    assert final.read_bytes() == b"secret\n" and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (4321, 4322)
    assert stat.S_IMODE(os.stat(root / "etc" / "mail").st_mode) == 0o755
    write_atomic(final, b"new\n", 0o600, 0, 0)  # replaces, leaves no temporary behind
    assert final.read_bytes() == b"new\n" and sorted(os.listdir(final.parent)) == ["secret.key"]


@pytest.mark.parametrize("path", ["etc/x", "/etc/../x", "/etc//x", "/", "/etc/./x"])
def test_non_normal_paths_refused(root, path):
    with pytest.raises(ClientError, match="absolute and normal"):
        safe_path(str(root), path)


def test_symlinked_parent_refused(root, tmp_path):
    (root / "srv").symlink_to(tmp_path)  # would lead outside the target
    with pytest.raises(ClientError, match="symlink"):
        safe_path(str(root), "/srv/escape")
