"""The documents that travel between the phases, each defined once as a strict schema.

What it does: every document one phase writes and a later one reads (the plan
file, the cache manifest, the host's install plan, the install report) is a
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

from typing import Annotated, Literal, TypeVar

import msgspec

from ais.errors import AisError

T = TypeVar("T")

Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every contract: immutable, and a field nobody defined is an error."""


def decode(data: bytes | str, schema: type[T], what: str, error: type[AisError]) -> T:
    """data as a `schema` document; `error(what: why at $.path)` when it is not one."""
    try:
        return msgspec.json.decode(data, type=schema)
    except msgspec.ValidationError as err:
        raise error(f"{what} is not a valid document: {err}") from err
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as err:
        raise error(f"{what} is not JSON: {err}") from err


def encode(doc: msgspec.Struct, *, indent: int | None = None) -> bytes:
    """The document as JSON bytes, keys sorted (stable hashes and diffs)."""
    data = msgspec.json.encode(doc, order="sorted")
    return msgspec.json.format(data, indent=indent) + b"\n" if indent is not None else data


def to_builtins(doc: msgspec.Struct) -> dict:
    """The document as plain dicts and lists (for embedding in another JSON object)."""
    return msgspec.to_builtins(doc, order="sorted")


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
