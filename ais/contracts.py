"""The documents that travel between the phases, each defined once as a strict schema.

What it does: every document one phase writes and a later one reads (the plan
file, the image header, the cache manifest, the host's install plan, the install
report) is a
msgspec `Struct` here: frozen, unknown fields refused, numbers bounded. `decode`
turns bytes or text into one, and any problem of form (not JSON, nested too
deep, a missing field, a wrong type, an unknown field, a number out of range, a
lone surrogate) into the caller's error class with a message naming the
document and the path in it (`$.serve.web-1.image`); `encode` writes one
(`indent=1` for files people read). Checks of meaning (image keys that exist,
regions disjoint, chunks in order) stay with the phase that owns the meaning.

Why msgspec and not pydantic: the client path imports this on a booting
machine for every step; msgspec imports in a few milliseconds, decodes and
validates in one pass in C, and has no runtime code generation. Schemas are
plain classes, readable as documentation (docs/interfaces.md shows them).

Reads: bytes or str. Fails with the given `AisError` subclass. Returns Structs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, TypeVar

import msgspec

from ais.errors import AisError, ImageFormatError

T = TypeVar("T")

Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every contract: immutable, and a field nobody defined is an error."""


def decode(data: bytes | str, schema: type[T], what: str, error: type[AisError], hint: str = "") -> T:
    """data as a `schema` document; `error("WHAT is not ...: why - at $.path; HINT")` when it is not one."""
    tail = f"; {hint}" if hint else ""
    try:
        return msgspec.json.decode(data, type=schema)
    except msgspec.ValidationError as err:
        raise error(f"{what} is not a valid document: {err}{tail}") from err
    except RecursionError as err:
        raise error(f"{what} is not valid JSON: nested too deeply{tail}") from err
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise error(f"{what} is not valid JSON: {err}{tail}") from err


def encode(doc: msgspec.Struct, *, indent: int | None = None) -> bytes:
    """The document as JSON bytes, keys sorted (stable hashes and diffs)."""
    data = msgspec.json.encode(doc, order="sorted")
    return msgspec.json.format(data, indent=indent) + b"\n" if indent is not None else data


def conform(data: dict, schema: type[msgspec.Struct]) -> dict:
    """data (built by AIS itself) checked against its schema, as plain data; a document
    AIS built that breaks its own contract is a bug, said as such (ContractBroken)."""
    try:
        return to_builtins(msgspec.convert(data, schema))
    except (msgspec.ValidationError, AisError) as err:
        raise ContractBroken(f"AIS built a {schema.__name__} that breaks its contract: {err}") from err


class ContractBroken(Exception):
    """A document AIS itself made does not match its schema: a bug, not bad input."""


def to_builtins(doc: msgspec.Struct) -> dict:
    """The document as plain dicts and lists, exactly as its JSON reads back."""
    return msgspec.json.decode(msgspec.json.encode(doc))


# ---------------------------------------------------------------- the plan

class PlanImage(Strict, kw_only=True):
    """One image the plan keeps: its key, its packages (NEVRAs, sorted), its stored size."""

    key: Name
    packages: tuple[Name, ...]
    size_bytes: Count


class Serving(Strict, kw_only=True):
    """How one configuration is installed: from which image (None: packages only)."""

    image: Name | None
    remainder: tuple[Name, ...]  # NEVRAs installed by RPM after imaging
    predicted_seconds: Seconds


class Plan(Strict, kw_only=True):
    """The planner's output (`ais plan --out`; embedded in the manifest)."""

    format: Literal[1] = 1
    inputs_hash: str
    budget_bytes: Count
    images: tuple[PlanImage, ...]
    serve: dict[Name, Serving]
    objective: float
    bound: float
    gap: float
    status: str
    solver: str
    baselines: dict[str, dict[str, float | int | bool | str | None]]
    candidates: dict[str, Count]
    warnings: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        return sum(i.size_bytes for i in self.images)

    def image(self, key: str) -> PlanImage:
        for img in self.images:
            if img.key == key:
                return img
        raise KeyError(key)

    def to_json(self) -> str:
        return encode(self, indent=1).decode()

    @classmethod
    def from_json(cls, text: bytes | str) -> "Plan":
        from ais.errors import BadInput

        plan = decode(text, cls, "the plan file", BadInput)
        keys = {i.key for i in plan.images}
        unknown = sorted({s.image for s in plan.serve.values() if s.image is not None} - keys)
        if unknown:
            raise BadInput(f"the plan file serves configurations from images it does not keep: {unknown}")
        return plan


# ---------------------------------------------------------------- the image header

MAX_CHUNK_RAW = 8 << 20  # hard limit a reader accepts; bounds memory per chunk
MAX_FS_BYTES = 1 << 46  # 64 TiB
MAX_CHUNKS = 1 << 24
MAX_BLOCKS = MAX_FS_BYTES // 1024

Block = Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOCKS)]
BlockCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_BLOCKS)]
Range = tuple[Block, BlockCount]  # (first block, block count)
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Label = Annotated[str, msgspec.Meta(max_length=64)]


class Chunk(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One independently compressed piece of an image (positional: offset, lengths, hash, ranges)."""

    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_FS_BYTES)]  # from the start of the chunk data area
    stored_length: Annotated[int, msgspec.Meta(ge=1, le=2 * MAX_CHUNK_RAW)]
    raw_length: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK_RAW)]
    sha256: Sha256  # of the stored (compressed) bytes: checked before decompressing
    ranges: tuple[Range, ...]  # where the decompressed bytes go, in order


class ImageHeader(Strict, kw_only=True):
    """Everything a writer needs to place an image's chunks, and to trust them.

    Its identity (`sha256`) is the hash of `to_json()`, compact with sorted keys:
    what the manifest records and the control channel pins.
    """

    format: Literal["aisimg"] = "aisimg"
    version: Literal[1] = 1
    block_size: Annotated[int, msgspec.Meta(ge=1024, le=65536)]
    fs_blocks: BlockCount
    fs_uuid: Label
    fs_label: Label
    image_id: Annotated[str, msgspec.Meta(max_length=256)]
    packages: tuple[str, ...]
    chunks: Annotated[tuple[Chunk, ...], msgspec.Meta(max_length=MAX_CHUNKS)]
    zero_ranges: tuple[Range, ...]
    totals: dict[str, int | float] = {}

    @property
    def fs_bytes(self) -> int:
        return self.fs_blocks * self.block_size

    @property
    def stored_bytes(self) -> int:
        return sum(c.stored_length for c in self.chunks)

    def to_obj(self) -> dict:
        return msgspec.to_builtins(self)

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), sort_keys=True)

    def sha256(self) -> str:
        """Identity of the header as serialised: what a control channel pins."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> "ImageHeader":
        """Decode and check a header; `ImageFormatError` naming the problem if it is not sound."""
        return decode(text, cls, "image header", ImageFormatError)

    def __post_init__(self) -> None:
        _check_header(self)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ImageFormatError(f"bad image header: {message}")


def _check_header(header: ImageHeader) -> None:
    """What the schema cannot say: regions inside the filesystem and disjoint, chunk
    lengths that match their ranges, chunks packed in order (hostile otherwise)."""
    block_size, fs_blocks = header.block_size, header.fs_blocks
    _need(block_size & (block_size - 1) == 0, f"block_size {block_size} is not a power of two")
    _need(header.fs_bytes <= MAX_FS_BYTES, f"fs_blocks={fs_blocks} makes a filesystem over {MAX_FS_BYTES} bytes")
    regions: list[tuple[tuple[int, int], str]] = []
    offset = 0
    for i, chunk in enumerate(header.chunks):
        _need(chunk.raw_length == sum(n for _, n in chunk.ranges) * block_size,
              f"chunk {i} raw_length {chunk.raw_length} does not match its ranges")
        _need(chunk.stored_length <= zstd_bound(chunk.raw_length),
              f"chunk {i} stored_length {chunk.stored_length} exceeds what zstd makes of {chunk.raw_length} bytes")
        _need(chunk.offset == offset, f"chunk {i} offset {chunk.offset} is not {offset} (chunks are packed in order)")
        offset += chunk.stored_length
        regions += [(r, f"chunk {i}") for r in chunk.ranges]
    regions += [(r, "zero") for r in header.zero_ranges]
    for (first, count), where in regions:
        _need(first + count <= fs_blocks,
              f"{where} range [{first}, {count}] goes beyond the filesystem ({fs_blocks} blocks)")
    regions.sort()
    end = -1
    for (first, count), where in regions:
        _need(first >= end, f"{where} range [{first}, {count}] overlaps another region")
        end = first + count


def zstd_bound(raw_length: int) -> int:
    """Largest zstd output for raw_length input (ZSTD_COMPRESSBOUND) plus frame slack."""
    small = ((128 << 10) - raw_length) >> 11 if raw_length < (128 << 10) else 0
    return raw_length + (raw_length >> 8) + small + 64


# ---------------------------------------------------------------- the cache manifest

class ManifestImage(Strict, kw_only=True):
    """One published image: where it is, what it holds, and the hash that pins its header."""

    key: Name
    packages: tuple[Name, ...]
    file: Name
    stored_bytes: Count
    fs_bytes: Count
    chunks: Count
    header_sha256: Sha256
    raw_bytes: Count = 0
    content_bytes: Count = 0  # bytes of the installed tree (sizes the filesystem)
    build_seconds: Seconds | None = None  # None: found built by a crashed run, not timed
    step_seconds: dict[str, Seconds] = {}  # rpm, mkfs, check, pack, ...


class ManifestConfiguration(Strict, kw_only=True):
    """How the rebuild serves one configuration: image id (None: packages only)."""

    image: Name | None
    remainder: tuple[Name, ...]
    predicted_seconds: Seconds


Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Hex128 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$")]


class ManifestSignature(Strict, kw_only=True):
    """The site key's ed25519 signature over the manifest without this field (ais.sitekey)."""

    key: Hex64  # the signer's public key
    ed25519: Hex128


class Manifest(Strict, kw_only=True):
    """manifest.json: the published state of the cache (generation 0: nothing published)."""

    format: Literal[1] = 1
    generation: Count
    published_at: str | None
    plan: Plan | None
    images: dict[Name, ManifestImage]
    configurations: dict[Name, ManifestConfiguration]
    cost: dict[str, float] | None = None  # the CostModel the plan used (checked by ais.cost)
    signature: ManifestSignature | None = None  # by the site key, when the site has one (ais.sitekey)


# ---------------------------------------------------------------- the host's install plan (server -> client)

Mode = Annotated[str, msgspec.Meta(pattern="^[0-7]{3,4}$")]
ArmoredKey = Annotated[str, msgspec.Meta(pattern="^-----BEGIN PGP PUBLIC KEY BLOCK-----", max_length=65536)]


class PlanPackage(Strict, kw_only=True):
    """One remainder RPM, in install order: where to fetch it and the digest to check first."""

    nevra: Name
    filename: Name
    size: Count
    installed_size: Count
    file_count: Count
    sha256: Sha256
    url: Name


class PlanFile(Strict, kw_only=True):
    """One host file: where it goes, its owner and mode, where to fetch it, its digest."""

    index: Count
    path: Name
    mode: Mode
    owner: Name
    group: Name
    size: Count
    sha256: Sha256
    url: Name


class PlanStream(Strict, kw_only=True):
    tcp: Name  # host:port of the TCP stream server
    multicast: Name | None  # group:port, None when the server does not multicast
    transport: Literal["unicast", "multicast", "bittorrent", "chain"] = "unicast"  # the host's HCD, else the server's
    transport_note: Text | None = None  # why the plan's transport is not the one the HCD asks for


class PlanImageRef(Strict, kw_only=True):
    """The image to write first: its id, the header pinned by its sha256, where to stream it."""

    id: Name
    key: Name | None
    packages: tuple[Name, ...]
    stored_bytes: Count
    fs_bytes: Count
    chunks: Count
    header_sha256: Sha256
    header: ImageHeader
    header_url: Name
    stream: PlanStream


class PlanFallback(Strict, kw_only=True):
    """Why the planned image could not serve, and what was chosen instead."""

    reason: str
    planned_image: Name | None
    chosen: str


class PlanPrediction(Strict, kw_only=True):
    total: Seconds
    source: str
    image: Seconds
    rpm: Seconds
    host_files: Seconds
    finish: Seconds


class HostPlan(Strict, kw_only=True):
    """GET /v1/hosts/<host>/plan: everything a client needs to reinstall, nothing it must guess."""

    format: Literal[1] = 1
    host: Name
    scd: Name
    generation: Count
    configuration: tuple[Name, ...]
    image: PlanImageRef | None
    fallback: PlanFallback | None
    packages: tuple[PlanPackage, ...]
    order_cycles: tuple[str, ...] = ()
    files: tuple[PlanFile, ...]
    predicted_seconds: PlanPrediction
    # The site's OpenPGP public keys (armored) for RPMs: when given, the client imports them into the
    # target's rpmdb and installs only packages signed by one of them (docs/server.md, "Signed RPMs").
    rpm_keys: tuple[ArmoredKey, ...] = ()


# ---------------------------------------------------------------- the install record and report (client -> server)

Text = Annotated[str, msgspec.Meta(max_length=4000)]


class RecordImage(Strict, kw_only=True):
    id: Name
    key: Name | None = None
    stored_bytes: Count | None = None
    transport: Name | None = None  # unicast | multicast: what delivered it
    transport_fallback: Text | None = None  # why multicast fell back to unicast


class InstallRecord(Strict, kw_only=True):
    """/var/lib/ais/install.json inside the target: what this reinstall did."""

    format: Literal[1] = 1
    host: Name
    scd: Name | None
    generation: Count | None
    server: Name | None
    image: RecordImage | None
    fallback: PlanFallback | None
    configuration: tuple[Name, ...] | None
    remainder: tuple[Name, ...]
    files: tuple[Name, ...]
    rpm_va_allowed: tuple[Text, ...] = ()
    timings: dict[Name, Seconds] = {}
    predicted_seconds: Seconds | None = None
    measured_seconds: Seconds
    started_at: float
    written_at: float


# The client's steps in the order they run (ais.client.session runs them; the server's live board
# numbers a progress report's phase by it, and `ais history` orders older reports' timings by it).
CLIENT_PHASES = ("identify", "plan", "check", "image", "grow", "mount", "install", "files", "verify",
                 "bootloader", "record", "unmount", "fsck", "report")

Epoch = Annotated[float, msgspec.Meta(ge=0, le=2**40)]  # seconds since 1970, the client's clock
PhaseName = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_-]{0,31}$")]


class PhaseSpan(Strict, kw_only=True):
    """One step of a reinstall by the client's wall clock (`ais history HOST` draws these)."""

    name: PhaseName
    start: Epoch
    end: Epoch

    def __post_init__(self):
        if self.end < self.start:
            raise msgspec.ValidationError(f"phase {self.name} ends ({self.end}) before it starts ({self.start})")


class InstallReport(Strict, kw_only=True):
    """POST /v1/hosts/<host>/report. One reinstall posts, in order:
    - "ok" (with the record) or "failed" (with the phase that failed and why), then, after an ok,
    - "rebooting": how the machine leaves the boot environment (phase "kexec" or "firmware";
      message says why a kexec fell back to the firmware), and
    - "up": the installed system booted (image and generation from its install record; phases
      holds one span "up" from its kernel's start to the report).
    phases: the steps' wall-clock spans, from "bootenv" (kernel start of the boot environment to
    the first step) on; timings: the same steps' durations (monotonic clock, summed per name).

    While it runs, a reinstall may also post "progress" (best effort, never stored: the server's
    live board, ais.server.live): the phase starting (required) and, within it, `done` of `total`
    (bytes of the image written in phase "image", packages fetched in phase "install"; absent
    otherwise). Only a progress report carries done and total, and done is at most total."""

    status: Literal["ok", "failed", "rebooting", "up", "progress"]
    phase: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    message: Text | None = None
    image: Name | None = None
    transport_fallback: Text | None = None
    generation: Count | None = None
    timings: dict[Name, Seconds] = {}
    phases: tuple[PhaseSpan, ...] = ()
    measured_seconds: Seconds | None = None
    predicted_seconds: Seconds | None = None
    record: InstallRecord | None = None
    done: Count | None = None  # progress only: bytes (image) or packages (install) so far
    total: Count | None = None  # progress only: of how many

    def __post_init__(self):
        if self.status == "progress" and not self.phase:
            raise msgspec.ValidationError("a progress report names its phase (`$.phase`)")
        if self.status != "progress" and (self.done is not None or self.total is not None):
            raise msgspec.ValidationError(f"only a progress report carries done and total, not {self.status!r}")
        if self.done is not None and self.total is not None and self.done > self.total:
            raise msgspec.ValidationError(f"done ({self.done}) is more than total ({self.total})")


# ------------------------------------------------------------------ the boot environment (ais bootenv build -> ais serve)

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
RelPath = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}/[A-Za-z0-9._-]{1,64}$")]


class BootEnvironment(Strict, kw_only=True):
    """CACHE/bootenv/current.json: the boot environment `ais serve` hands out at /v1/boot/."""

    format: Literal[1] = 1
    key: Sha256  # sha256 of its inputs; also the name of its directory
    kernel: RelPath  # <key>/vmlinuz, relative to CACHE/bootenv
    initrd: RelPath  # <key>/initrd.img
    kernel_sha256: Sha256
    initrd_sha256: Sha256
    kernel_release: Name
