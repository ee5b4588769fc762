"""Plain data passed between the phases: packages, configurations, hosts, groups.

Everything here is a frozen dataclass built by `ais.descriptors` and `ais.repo`
(the edge that reads XML and RPM headers). Later phases (planner, cache, server,
client) read only these, never XML or RPM internals. `to_json`/`from_json`
round-trip them for plan files and the server's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRANSPORTS = ("unicast", "multicast", "bittorrent", "chain")  # how an image travels to a client
ON_CHANGE = ("update", "reinstall")  # what a changed SCD does to its hosts: apply the package delta, or reinstall
ALL_GROUP = "all"  # the implicit group every host is in


@dataclass(frozen=True, order=True)
class Package:
    """One concrete RPM in the repository."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    filename: str = field(compare=False)  # path relative to the repository root
    size: int = field(compare=False)  # bytes of the .rpm file
    installed_size: int = field(compare=False)  # bytes once installed
    file_count: int = field(compare=False)
    scriptlets: int = field(compare=False)  # number of install/erase scriptlets
    digest: str = field(compare=False)  # sha256 of the .rpm file
    requires: tuple[str, ...] = field(default=(), compare=False)
    provides: tuple[str, ...] = field(default=(), compare=False)

    @property
    def nevra(self) -> str:
        """name-epoch:version-release.arch, the identity used everywhere."""
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"

    @property
    def identity(self) -> str:
        """nevra plus header digest: what an image id hashes."""
        return f"{self.nevra}@{self.digest}"


@dataclass(frozen=True)
class Configuration:
    """The resolved, dependency-closed package set of one SCD."""

    name: str  # SCD name, e.g. "web-3"
    base: str  # name of the installation-base SCD it builds on
    kind: str  # "base" or "system"
    packages: tuple[Package, ...]  # sorted by nevra, one version per name
    source: str  # descriptor file it came from
    on_change: str = "reinstall"  # ON_CHANGE: when this SCD changes, update its hosts in place or reinstall them

    @property
    def nevras(self) -> frozenset[str]:
        return frozenset(p.nevra for p in self.packages)


@dataclass(frozen=True)
class HostFile:
    """One host-specific file to write into the target after install."""

    path: str  # absolute path inside the target, normalised, no '..'
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class Host:
    """One machine, from its HCD."""

    name: str
    macs: tuple[str, ...]  # lower-case aa:bb:cc:dd:ee:ff
    scd: str  # name of the configuration it runs
    reinstalls: float  # reinstalls per period: the planner's weight
    files: tuple[HostFile, ...]
    token: str | None  # shared secret for fetching its host files
    source: str
    transport: str | None = None  # how its image travels (TRANSPORTS); None: the server's default
    groups: tuple[str, ...] = (ALL_GROUP,)  # sorted group names, always with ALL_GROUP


@dataclass(frozen=True)
class Group:
    """A set of peer hosts: one declared in groups.xml, or the implicit ALL_GROUP."""

    name: str
    description: str
    hosts: tuple[str, ...]  # sorted host names (a declared group has at least one)


@dataclass(frozen=True)
class Site:
    """Everything the descriptors say, resolved: the planner's input."""

    configurations: tuple[Configuration, ...]
    hosts: tuple[Host, ...]
    packages: tuple[Package, ...]  # the whole repository
    groups: tuple[Group, ...] = ()  # sorted by name; from load_site, always with ALL_GROUP

    def configuration(self, name: str) -> Configuration:
        for conf in self.configurations:
            if conf.name == name:
                return conf
        raise KeyError(name)

    def group(self, name: str) -> Group:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def weights(self) -> dict[str, float]:
        """Expected reinstalls per period of each configuration (sum over hosts)."""
        weights = {c.name: 0.0 for c in self.configurations}
        for host in self.hosts:
            weights[host.scd] = weights.get(host.scd, 0.0) + host.reinstalls
        return weights

