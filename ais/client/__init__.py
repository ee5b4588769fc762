"""The client: reinstall one machine from an `ais serve` server.

`ais-boot` (POSIX sh, run by an initramfs) is a short sequence over the steps
that `ais client <step>` exposes; `ais client reinstall` runs the same steps in
one Python process (what the demo, tests and benchmark use). Steps: plan (api),
check (target), image / mkfs + grow + mount (disk), install the remainder
(packages), host files (hostfiles), verify, install record and report (record),
unmount + fsck. State between steps lives in a session directory (session).
"""
