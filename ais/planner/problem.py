"""The planner's plain input: package ids, configuration bitsets, costs, weights.

What it does: turns a `Site` (or plain dicts, for tests and the benchmark) into
a `Problem` whose package sets are Python ints used as bitsets over package ids,
and evaluates package sets: RPM seconds, stored bytes, imaging seconds, saving.
What it reads: `Site.configurations`, `Site.hosts` (through `Site.weights()`),
a `CostModel`, optional measured stored sizes of already-built package sets.
What it fails on: no configurations, hosts naming unknown configurations,
negative weights or budget: `BadInput`.
What it returns: `Problem`.

The key fact the whole planner uses: with t(c, k) = base(c) - saving(k),
saving(k) = rpm_seconds(k) - image_seconds(k) does not depend on c, so a
configuration simply takes the kept image ⊆ it with the largest saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from msgspec.structs import replace

from ais.errors import BadInput
from ais.cost import CostModel
from ais.repo.closure import DependencyIndex


def bits_of(ids) -> int:
    """Bitset (int) of an iterable of package ids."""
    value = 0
    for i in ids:
        value |= 1 << i
    return value


def ids_of(bits: int) -> list[int]:
    """Package ids in a bitset, ascending."""
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def bit_indices(bits: int) -> np.ndarray:
    """Indices of the set bits, ascending, as an int64 array (fast for wide bitsets)."""
    if not bits:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(bits.to_bytes((bits.bit_length() + 7) // 8, "little"), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little")).astype(np.int64)


def is_subset(a: int, b: int) -> bool:
    return a & ~b == 0


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything the optimiser needs, as plain numbers.

    names[i] is configuration i, configs[i] its package bitset, weights[i] its
    expected reinstalls. Package j has nevras[j], rpm_seconds[j] and
    installed_bytes[j]. bases are the installation bases (bitsets).
    known_sizes maps a package bitset to its measured stored bytes.
    """

    names: tuple[str, ...]
    configs: tuple[int, ...]
    weights: np.ndarray
    nevras: tuple[str, ...]
    rpm_seconds: np.ndarray
    installed_bytes: np.ndarray
    budget_bytes: int
    cost: CostModel
    bases: tuple[int, ...] = ()
    known_sizes: dict[int, int] = field(default_factory=dict)
    # requires[j]: masks of alternative providers, one per requirement of package j
    # that other packages meet; an image keeps j only if each mask meets the image.
    requires: dict[int, tuple[int, ...]] = field(default_factory=dict)
    config_files: tuple[int, ...] = ()  # installed files of each configuration (verify, fsck)
    _installable: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def n_packages(self) -> int:
        return len(self.nevras)

    def mask(self, bits: int) -> np.ndarray:
        """Boolean mask over package ids of a bitset (fast path for sums)."""
        n = self.n_packages
        raw = np.frombuffer(bits.to_bytes((n + 7) // 8 or 1, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    def rpm_time(self, bits: int) -> float:
        """Seconds to install the packages of a set by RPM (no transaction cost)."""
        return float(self.rpm_seconds[self.mask(bits)].sum()) if bits else 0.0

    def stored_bytes(self, bits: int) -> int:
        """Measured stored bytes when known, else the cost model's estimate; 0 for ∅."""
        if not bits:
            return 0
        if bits in self.known_sizes:
            return int(self.known_sizes[bits])
        return self.cost.estimate_stored_bytes(float(self.installed_bytes[self.mask(bits)].sum()))

    def image_time(self, bits: int) -> float:
        return self.cost.image_seconds(self.stored_bytes(bits)) if bits else 0.0

    def saving(self, bits: int) -> float:
        """Seconds saved by imaging this set instead of installing it by RPM."""
        if not bits:
            return 0.0
        installed = float(self.installed_bytes[self.mask(bits)].sum())
        return self.cost.image_saving(self.rpm_time(bits), self.stored_bytes(bits), installed)

    def base_time(self, i: int) -> float:
        """t(c, ∅): configuration i installed by RPM only, onto a fresh filesystem."""
        files = self.config_files[i] if self.config_files else 0
        return self.cost.reinstall_seconds(stored_bytes=None, remainder_rpm_s=self.rpm_time(self.configs[i]),
                                           config_files=files)

    def installable(self, bits: int) -> int:
        """The largest subset of bits that rpm can install alone (dependency-closed).

        An intersection of configurations need not be closed (web-1 and web-2
        share httpd but not the libssl it needs); shrinking keeps it a subset of
        every configuration it could serve.
        """
        if not self.requires:
            return bits
        found = self._installable.get(bits)
        if found is None:
            found = close_bits(bits, self.requires)
            self._installable[bits] = found
        return found

    def time(self, i: int, bits: int) -> float:
        """t(c, k) for configuration i served by the image of `bits` (⊆ config)."""
        if not is_subset(bits, self.configs[i]):
            raise ValueError(f"image is not a subset of {self.names[i]}")
        return self.base_time(i) - self.saving(bits)


def close_bits(bits: int, requires: dict[int, tuple[int, ...]]) -> int:
    """Drop packages with an unmet requirement until none is left (see installable)."""
    changed = True
    while changed:
        changed = False
        for j in ids_of(bits):
            if any(not alternatives & bits for alternatives in requires.get(j, ())):
                bits &= ~(1 << j)
                changed = True
    return bits


def problem_from_sets(
    configs: dict[str, frozenset],
    *,
    weights: dict[str, float],
    rpm_seconds: dict,
    installed_bytes: dict,
    budget_bytes: int,
    cost: CostModel | None = None,
    bases=(),
    known_sizes: dict[frozenset, int] | None = None,
    requires: dict | None = None,
    file_counts: dict | None = None,
) -> Problem:
    """Build a Problem from plain sets of package keys (any sortable hashables).

    rpm_seconds/installed_bytes map each package key to its figures; bases are
    package sets (installation bases); known_sizes maps package sets to
    measured stored bytes; requires maps a package key to its requirements, each
    a set of alternative provider keys (None: every set is installable);
    file_counts maps a package key to its installed files (None: not modelled).
    """
    check_inputs(configs, weights, budget_bytes)
    keys = sorted(set().union(*configs.values(), *bases))
    index = {k: i for i, k in enumerate(keys)}
    names = tuple(sorted(configs))
    to_bits = lambda s: bits_of(index[p] for p in s)  # noqa: E731
    sizes = {}
    for pkgs, stored in (known_sizes or {}).items():
        if all(p in index for p in pkgs):
            sizes[to_bits(pkgs)] = int(stored)
    cost = fitted_stored_factor(cost or CostModel(), sizes, {index[k]: installed_bytes[k] for k in keys})
    return Problem(
        names=names,
        configs=tuple(to_bits(configs[n]) for n in names),
        weights=np.array([float(weights.get(n, 0.0)) for n in names]),
        nevras=tuple(str(k) for k in keys),
        rpm_seconds=np.array([float(rpm_seconds[k]) for k in keys]),
        installed_bytes=np.array([float(installed_bytes[k]) for k in keys]),
        budget_bytes=int(budget_bytes),
        cost=cost,
        bases=tuple(sorted({to_bits(b) for b in bases if b})),
        known_sizes=sizes,
        config_files=tuple(sum(file_counts[p] for p in configs[n]) for n in names) if file_counts else (),
        requires={
            index[k]: tuple(bits_of(index[p] for p in alts if p in index) for alts in needs)
            for k, needs in (requires or {}).items() if k in index and needs
        },
    )


def fitted_stored_factor(cost: CostModel, sizes: dict[int, int], installed: dict[int, float]) -> CostModel:
    """The cost model with stored_factor refitted on the images already measured.

    Estimates of images never built then follow what this cache's images really
    take, so a rebuild's second plan (with the sizes it just measured) converges.
    """
    if not sizes:
        return cost
    measured = sum(stored - cost.image_overhead_bytes for stored in sizes.values())
    raw = sum(sum(installed[j] for j in ids_of(bits)) for bits in sizes)
    if raw <= 0 or measured <= 0:
        return cost
    return replace(cost, stored_factor=measured / raw)


def check_inputs(configs: dict, weights: dict, budget_bytes: int) -> None:
    """Reject input the optimiser cannot mean anything with (BadInput)."""
    if not configs:
        raise BadInput("no configurations to plan for: the descriptors define no SCD")
    unknown = sorted(set(weights) - set(configs))
    if unknown:
        raise BadInput(f"hosts point to configurations that do not exist: {', '.join(unknown)}")
    negative = sorted(n for n, w in weights.items() if w < 0)
    if negative:
        raise BadInput(f"negative reinstall rates for {', '.join(negative)}")
    if budget_bytes < 0:
        raise BadInput(f"budget must be non-negative, not {budget_bytes}")


def problem_from_site(site, budget_bytes: int, cost: CostModel | None = None, known_sizes=None) -> Problem:
    """Build a Problem from a Site: nevras as package keys, HCD weights.

    known_sizes maps frozensets of nevra strings to measured stored bytes.
    """
    cost = cost or CostModel()
    configs = {c.name: c.nevras for c in site.configurations}
    weights = site.weights()
    packages = {p.nevra: p for c in site.configurations for p in c.packages}
    bases = [c.nevras for c in site.configurations if c.kind == "base"]
    dependencies = DependencyIndex(packages.values())
    return problem_from_sets(
        configs,
        weights=weights,
        rpm_seconds={n: cost.rpm_seconds(p.installed_size, p.file_count, p.scriptlets) for n, p in packages.items()},
        installed_bytes={n: p.installed_size for n, p in packages.items()},
        budget_bytes=budget_bytes,
        cost=cost,
        bases=bases,
        known_sizes=known_sizes,
        requires=dependencies.needs,
        file_counts={n: p.file_count for n, p in packages.items()},
    )
