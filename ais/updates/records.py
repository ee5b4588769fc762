"""An update as data: its operations, its signed form, and the package state it leads to.

What it does: `Op` is one package operation (install or upgrade to a NEVRA from an
RPM file with its size and sha256, or erase a name); `Update` is a site-wide
sequence number, the group it is for, whether it is urgent, its operations and
the ed25519 signature of the site's update key over everything else
(`signed_bytes`). `parse_update` decodes one from a peer or the server (strict:
types, bounds, unknown fields). `target_state(updates)` folds updates in sequence
order into {package name: NEVRA or None (erased)}: the highest sequence number that
touches a name decides it, whatever order the updates arrived in, so every host
that knows the same updates reaches the same state. `delta(target, installed)`
says what one rpm transaction must do to get there.

Reads: JSON bytes or dicts. Fails with `UpdateRefused` (bad input from a peer or an
admin). Returns frozen structs and plain dicts.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from ais.contracts import Strict, decode, encode
from ais.errors import BadInput

NAME = r"[A-Za-z0-9_.+\-]{1,128}"
HOST = r"[a-z0-9][a-z0-9\-]{0,62}"
GROUP = rf"{HOST}|scd:[a-z0-9][a-z0-9._\-]{{0,62}}"  # a declared group, `all`, or an SCD's own group
NEVRA = re.compile(r"(?P<name>[A-Za-z0-9_.+\-]+)-(?P<epoch>\d+):(?P<version>[^-\s]+)-(?P<release>[^-\s]+)\.(?P<arch>[a-z0-9_]+)")
HOST_NAME = re.compile(HOST)
RPM_FILE = r"[A-Za-z0-9_.+\-]{1,200}\.rpm"
MAX_OPS = 1000


class UpdateRefused(BadInput):
    """An update, an announcement or a package that must not be installed: forged, for another
    group, malformed, or with the wrong bytes."""


class Op(Strict, kw_only=True):
    action: Literal["install", "erase"]
    name: Annotated[str, msgspec.Meta(pattern=f"^{NAME}$")]
    nevra: str | None = None  # install: the NEVRA the RPM file holds
    file: Annotated[str, msgspec.Meta(pattern=f"^{RPM_FILE}$")] | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=1 << 34)] | None = None
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None = None


class Update(Strict, kw_only=True):
    seq: Annotated[int, msgspec.Meta(ge=1, le=1 << 40)]
    group: Annotated[str, msgspec.Meta(pattern=f"^(?:{GROUP})$")]
    urgent: bool = False
    ops: Annotated[tuple[Op, ...], msgspec.Meta(min_length=1, max_length=MAX_OPS)]
    origin: Annotated[str, msgspec.Meta(max_length=200)] = ""
    submitted_at: float = 0.0
    signature: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$")] | None = None

    @property
    def files(self) -> tuple[Op, ...]:
        """The install operations (each names an RPM file to fetch)."""
        return tuple(op for op in self.ops if op.action == "install")


def check_ops(ops: tuple[Op, ...]) -> None:
    """An install names its file, size, sha256 and a NEVRA of the same name; an erase only a name;
    a name at most once per update."""
    seen = set()
    for op in ops:
        if op.name in seen:
            raise UpdateRefused(f"package {op.name} appears twice in one update")
        seen.add(op.name)
        if op.action == "erase":
            if op.file or op.nevra or op.sha256 or op.size is not None:
                raise UpdateRefused(f"erase of {op.name} must name only the package")
            continue
        if not (op.file and op.nevra and op.sha256 and op.size is not None):
            raise UpdateRefused(f"install of {op.name} needs file, nevra, size and sha256")
        m = NEVRA.fullmatch(op.nevra)
        if not m or m["name"] != op.name:
            raise UpdateRefused(f"install of {op.name}: {op.nevra!r} is not a NEVRA of that package")


def parse_update(data: bytes | str | dict) -> Update:
    """A strict Update from JSON (or its dict form); UpdateRefused says what is wrong."""
    if isinstance(data, dict):
        try:
            update = msgspec.convert(data, Update)
        except msgspec.ValidationError as err:
            raise UpdateRefused(f"update is not a valid document: {err}") from err
    else:
        update = decode(data, Update, "update", UpdateRefused)
    check_ops(update.ops)
    return update


def signed_bytes(update: Update) -> bytes:
    """What the signature covers: the canonical JSON of every field but the signature."""
    return encode(msgspec.structs.replace(update, signature=None))


def as_dict(update: Update) -> dict:
    return msgspec.to_builtins(update)


def target_state(updates) -> dict[str, str | None]:
    """{name: NEVRA to have, or None to have it erased}, the highest sequence number deciding."""
    target: dict[str, str | None] = {}
    for update in sorted(updates, key=lambda u: u.seq):
        for op in update.ops:
            target[op.name] = op.nevra if op.action == "install" else None
    return target


def installed_by_name(nevras) -> dict[str, str]:
    """{name: NEVRA} of an rpm database's NEVRAs (AIS's name-epoch:version-release.arch form)."""
    out = {}
    for nevra in nevras:
        m = NEVRA.fullmatch(nevra)
        if m:
            out[m["name"]] = nevra
    return out


def delta(target: dict[str, str | None], installed) -> tuple[list[str], list[str]]:
    """(NEVRAs to install or up/downgrade to, names to erase) to bring `installed` to `target`."""
    have = installed_by_name(installed)
    put = sorted(n for name, n in target.items() if n is not None and have.get(name) != n)
    erase = sorted(name for name, n in target.items() if n is None and name in have)
    return put, erase
