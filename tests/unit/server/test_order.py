"""Install order on tiny hand-drawn dependency graphs with literal expected answers."""

from ais.model import Package
from ais.server.order import install_order


def pkg(name, requires=(), provides=()):
    return Package(name, 0, "1", "1", "x86_64", f"RPMS/{name}.rpm", 0, 0, 0, 0, "", tuple(requires),
                   (f"{name} = 1-1", *provides))


def names(pkgs):
    order, cycles = install_order(pkgs)
    return [p.name for p in order], cycles


def test_chain():
    assert names([pkg("app", ["lib >= 2"]), pkg("lib", ["fs"]), pkg("fs")]) == (["fs", "lib", "app"], [])


def test_requires_by_provided_capability_and_file():
    shell = pkg("busybox", provides=["/bin/sh"])
    mta = pkg("postfix", ["/bin/sh"], provides=["MTA"])
    imap = pkg("dovecot", ["MTA", "/bin/sh"])
    assert names([imap, mta, shell]) == (["busybox", "postfix", "dovecot"], [])


def test_requires_outside_the_list_are_ignored():
    assert names([pkg("b", ["libc"]), pkg("a", ["libc"])]) == (["a", "b"], [])


def test_cycle_broken_at_first_name():
    assert names([pkg("x", ["y"]), pkg("y", ["x"]), pkg("z", ["y"])]) == (["x", "y", "z"], ["x"])


def test_empty():
    assert install_order([]) == ([], [])


def test_real_configuration(small_site):
    conf = small_site.configuration("mail")
    order, cycles = install_order(conf.packages)
    position = {p.name: i for i, p in enumerate(order)}
    assert sorted(position) == sorted(p.name for p in conf.packages) and cycles == []
    assert position["filesystem"] < position["libc"] < position["postfix"] < position["dovecot"]
    assert position["busybox-base"] < position["postfix"]
