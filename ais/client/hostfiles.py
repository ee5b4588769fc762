"""Write the host's own files into the target: exact bytes, mode, owner and group.

What it does: `write_host_files(api, plan, root)` fetches each file of the plan
(with the host's token), checks its sha256 and size, and writes it atomically:
a temporary file in the same directory, write + fchmod + fchown + fsync, then
rename over the final name, then fsync the directory. Missing parent
directories are created (mode 0755, root). Owners and groups are names looked
up in the TARGET's /etc/passwd and /etc/group (a user the installed packages
created exists there, not on the machine running the installer); numeric ids
are taken as they are.

Reads: the plan, the server, <root>/etc/passwd, <root>/etc/group. Fails with
`ClientError` for a digest mismatch (nothing of that file is written), an
unknown owner or group, a path that is not absolute and normal, a parent
that is a symlink (it could lead outside the target), a path that is a
directory in the installed image or whose parent is not a directory, and a
write the disk refuses (ENOSPC, EIO, ...: the message names the path and the
errno). Returns the paths written.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from ais.errors import ClientError, describe_errno
from ais.files import write_atomic

if TYPE_CHECKING:
    from ais.client.api import Api


def read_ids(root: str | os.PathLike, table: str) -> dict[str, int]:
    """name -> id from <root>/etc/passwd or <root>/etc/group."""
    ids = {}
    path = Path(root, "etc", table)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return ids
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            ids.setdefault(fields[0], int(fields[2]))
    return ids


def resolve(name: str, ids: dict[str, int], what: str, root) -> int:
    if name.isdigit():
        return int(name)
    if name not in ids:
        raise ClientError(f"{what} {name!r} is not in the target's /etc/{'passwd' if what == 'owner' else 'group'} "
                          f"({root}): add it to a package of the configuration, or use a numeric id")
    return ids[name]


def safe_path(root: str, path: str) -> Path:
    """The file's path under root; refuses relative or non-normal paths and symlinked parents."""
    if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise ClientError(f"host file path {path!r} must be absolute and normal")
    current = Path(root)
    for part in Path(path).parts[1:-1]:
        current = current / part
        if current.is_symlink():
            raise ClientError(f"host file {path}: {current} is a symlink in the target; refusing to follow it")
    return Path(root, path.lstrip("/"))


def make_parents(root: str, final: Path) -> None:
    missing = []
    parent = final.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o755)
        os.chown(directory, 0, 0)


def refuse_non_files(root: str, path: str, final: Path) -> None:
    """A host file may replace a file or a symlink, never a directory; its parents must be directories."""
    if final.is_dir() and not final.is_symlink():
        raise ClientError(f"host file {path} is a directory in the installed image ({final}): a host file "
                          f"cannot replace it; give the file another path in the HCD")
    parent = final.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ClientError(f"host file {path}: {'/' + str(parent.relative_to(root))} is not a directory in the "
                          f"installed image ({parent}); give the file another path in the HCD")


def write_one(root: str, path: str, final: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Parents, then the atomic write; a disk that refuses (ENOSPC, EIO, ...) is named with the path."""
    refuse_non_files(root, path, final)
    try:
        make_parents(root, final)
        write_atomic(final, data, mode, uid, gid)
    except OSError as err:
        raise ClientError(f"host file {path}: writing {final} failed: {describe_errno(err)}") from err


def write_host_files(api: "Api", plan: dict, root: str, scratch: Path) -> list[str]:
    users, groups = read_ids(root, "passwd"), read_ids(root, "group")
    written = []
    scratch.mkdir(parents=True, exist_ok=True)
    for entry in plan["files"]:
        final = safe_path(root, entry["path"])
        uid = resolve(entry["owner"], users, "owner", root)
        gid = resolve(entry["group"], groups, "group", root)
        fetched = scratch / f"file-{entry['index']}"
        api.download(entry["url"], fetched, sha256=entry["sha256"], size=entry.get("size"), auth=True)
        data = fetched.read_bytes()
        fetched.unlink()
        write_one(root, entry["path"], final, data, int(entry["mode"], 8), uid, gid)
        written.append(entry["path"])
    return written
