"""The cost model: how long imaging and RPM installs take (a contract shared by
the planner, which plans with it, the server, which predicts with it, and
`ais calibrate`, which measures it).

What it does: `CostModel` turns package facts (installed size, file count,
scriptlets) into RPM install seconds, and an image's stored bytes into imaging
seconds, with one formula for a whole reinstall (`reinstall_seconds`). It is a
strict msgspec Struct: the calibration file and the manifest's `cost` decode
through it. Fitting it to measurements is `ais.calibrate.fit`.
What it reads: a calibration JSON file (`load_calibration`), written by
`ais calibrate` (`save_calibration`) into the cache directory by default;
`cost_for` picks the file to use.
What it fails on: a missing or malformed calibration file raises `BadInput`;
What it returns: `CostModel` (frozen) instances.

The defaults are sane orders of magnitude for rpm on a local disk, not
measurements; `ais calibrate` replaces them with figures from this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import msgspec

from ais.errors import BadInput
from ais.files import write_atomic

CALIBRATION_FORMAT = 1
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class CostModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Seconds per unit of work, plus how images are sized.

    RPM time of one package = per_package + per_byte * installed_size
    + per_file * file_count + per_scriptlet * scriptlets.
    Image time = image_fixed (write set-up, grow, new UUID)
    + stored_bytes / stream_bytes_per_second.
    Stored bytes of an image (when not measured) = image_overhead_bytes
    + stored_factor * sum of installed sizes.
    A reinstall (`reinstall_seconds`, the span the client times from the first
    image byte to a checked filesystem) = the image time, or fresh_fs for a
    packages-only install, + transaction + RPM time of the remainder
    + host_files + finish + finish_per_file * files of the configuration
    + finish_per_image_byte * installed bytes that came by image (mount, rpm -Va,
    install record, unmount, fsck; rpm -Va reads back what was imaged, while
    what rpm just installed is still in the page cache).
    """

    rpm_per_package_s: NonNegative = 0.03
    rpm_per_byte_s: NonNegative = 1.0 / 40e6  # rpm unpacks about 40 MB/s
    rpm_per_file_s: NonNegative = 0.0002
    rpm_per_scriptlet_s: NonNegative = 0.25
    transaction_s: NonNegative = 2.0  # opening the rpm db, ordering, verifying
    host_files_s: NonNegative = 1.0  # writing one host's files
    image_fixed_s: NonNegative = 2.0  # start of a stream, resize2fs, new UUID
    stream_bytes_per_s: Positive = 100e6  # stored (compressed) bytes per second
    stored_factor: NonNegative = 0.5  # compressed stored bytes per installed byte
    image_overhead_bytes: Annotated[int, msgspec.Meta(ge=0)] = 16 * 2**20  # filesystem metadata of one image
    fresh_fs_s: NonNegative = 2.0  # mkfs of an empty filesystem (packages-only install)
    finish_s: NonNegative = 2.0  # mount, install record, unmount, fsck start-up
    finish_per_file_s: NonNegative = 0.0002  # rpm -Va and fsck, per installed file
    finish_per_image_byte_s: NonNegative = 2e-9  # rpm -Va reading back imaged bytes (~500 MB/s)

    def rpm_seconds(self, installed_size: float, file_count: float, scriptlets: float) -> float:
        """Predicted seconds to install one package by RPM."""
        return (
            self.rpm_per_package_s
            + self.rpm_per_byte_s * installed_size
            + self.rpm_per_file_s * file_count
            + self.rpm_per_scriptlet_s * scriptlets
        )

    def estimate_stored_bytes(self, installed_total: float) -> int:
        """Stored bytes of an image holding packages of this installed size."""
        return int(self.image_overhead_bytes + self.stored_factor * installed_total)

    def image_seconds(self, stored_bytes: float) -> float:
        """Predicted seconds to stream, write and grow an image of this stored size."""
        return self.image_fixed_s + stored_bytes / self.stream_bytes_per_s

    def image_saving(self, rpm_seconds: float, stored_bytes: float, installed_bytes: float) -> float:
        """Seconds an image saves over installing its packages by RPM onto a fresh filesystem.

        The same for every configuration it serves: the planner's key fact.
        """
        return (rpm_seconds + self.fresh_fs_s - self.image_seconds(stored_bytes)
                - self.finish_per_image_byte_s * installed_bytes)

    def reinstall_seconds(self, *, stored_bytes: float | None, remainder_rpm_s: float, config_files: int,
                          image_installed_bytes: float = 0) -> float:
        """Predicted reinstall span; stored_bytes None means packages only."""
        if stored_bytes is None:
            start = self.fresh_fs_s
        else:
            start = self.image_seconds(stored_bytes) + self.finish_per_image_byte_s * image_installed_bytes
        return (start + self.transaction_s + remainder_rpm_s + self.host_files_s
                + self.finish_s + self.finish_per_file_s * config_files)


COST_FILE = "cost.json"  # where `ais calibrate` writes, in the cache directory


def cost_to_obj(model: CostModel) -> dict:
    """The model as a JSON object (the calibration file, and the manifest's `cost`)."""
    return {"format": CALIBRATION_FORMAT, **msgspec.structs.asdict(model)}


def save_calibration(model: CostModel, path: str | Path) -> None:
    """Write the model as JSON, atomically (a cron rebuild may be reading it)."""
    write_atomic(path, (json.dumps(cost_to_obj(model), indent=2, sort_keys=True) + "\n").encode())


def load_calibration(path: str | Path) -> CostModel:
    """Read a model written by save_calibration; BadInput naming the file if it is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise BadInput(f"{path}: cannot read calibration: {err.strerror}") from err
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: calibration is not JSON: {err}") from err
    return cost_from_obj(data, str(path))


def cost_from_obj(data: object, where: str) -> CostModel:
    """Check and build a model from its JSON object (the schema is CostModel's fields:
    non-negative numbers, positive stream rate); missing keys take the defaults."""
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise BadInput(f"{where}: not a calibration of format {CALIBRATION_FORMAT}")
    try:
        return msgspec.convert({k: v for k, v in data.items() if k != "format"}, CostModel)
    except msgspec.ValidationError as err:
        raise BadInput(f"{where}: {err}; write it again with ais calibrate") from err


def cost_for(cache_dir: str | Path, explicit: str | Path | None) -> tuple[CostModel, str]:
    """The cost model to plan with, and where it came from.

    An explicit file wins; else the calibration `ais calibrate` left in the cache
    directory; else the built-in defaults (orders of magnitude, not measurements).
    """
    if explicit:
        return load_calibration(explicit), str(explicit)
    default = Path(cache_dir, COST_FILE)
    if default.is_file():
        return load_calibration(default), str(default)
    return CostModel(), "built-in defaults (run `ais calibrate` to measure this machine)"
