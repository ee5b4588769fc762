"""rpm -Va lines: what the verifier allows (host files, listed scriptlet-written %config) and refuses."""

from ais.client.verify import rpm_va_problems

OUTPUT = """\
S.5....T.  c /etc/hostname
S.5....T.  c /etc/slurm/slurm.conf
S.5....T.    /usr/sbin/postfix
missing     /usr/lib/libc.so
.M.......  c /etc/passwd
"""


def test_split():
    allowed, bad = rpm_va_problems(OUTPUT, {"/etc/hostname"})
    assert allowed == ["S.5....T.  c /etc/hostname", "S.5....T.  c /etc/slurm/slurm.conf"]
    assert bad == ["S.5....T.    /usr/sbin/postfix", "missing     /usr/lib/libc.so", ".M.......  c /etc/passwd"]


def test_empty():
    assert rpm_va_problems("", set()) == ([], [])
