"""Many machines at once: three QEMU guests (TCG) on one L2 segment PXE-boot from one `ais serve` and
reinstall themselves over multicast, then kexec into their installed systems, which report "up".

The segment is a lab bridge (network namespaces): the server's host and its DHCP server (dnsmasq,
configured as docs/client.md tells a site to: iPXE clients get the URL of their script at
/v1/boot/ipxe/${mac}) on one port, and one tap per guest. Each guest's firmware (iPXE) asks dnsmasq,
fetches its script, the boot environment's kernel and initramfs from the server; the boot environment
gets an address from dnsmasq too, and its image by multicast. Links are 1500-byte Ethernet, so the
streamer's 8 KiB datagrams travel as IP fragments, as on a real network.

Checked: every disk holds exactly its SCD's packages, rpm -Va is empty and e2fsck clean; every image
came by multicast (no fallback; the streamer sent no byte by TCP); the history holds ok, rebooting
(kexec) and up for each host. How much of the session the guests shared depends on how far apart
they boot, so it is measured by `make bench-boot`, not asserted here.
"""

from __future__ import annotations

import json
import re

import pytest

from aislab.disks import serve_in, target_facts
from aislab.net import NetLab
from aislab.qemu import Vm, blank_disk, boot_site, dhcp_server
from aislab.site import stored_reports

HOSTS = {"node01": "52:54:00:00:00:08", "node02": "52:54:00:00:00:09", "node03": "52:54:00:00:00:0a"}
GROUP, PORT = "239.255.42.12", 7600
pytestmark = pytest.mark.root



@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir, bootenv):
    base = tmp_path_factory.mktemp("many")
    return {"base": base, **boot_site(base, repo_dir, ["hpc"], list(HOSTS))}


def test_three_vms_on_one_segment_reinstall_by_multicast_and_come_back_up(site, repo_dir, tmp_path):
    base, hist, log_path = site["base"], tmp_path / "history.sqlite", tmp_path / "serve.log"
    disks = {host: blank_disk(tmp_path / f"{host}.img") for host in HOSTS}
    with NetLab(1, tag="aivm", mtu=1500) as lab, open(log_path, "w") as log:
        url = serve_in(lab, 0, site["descriptors"], repo_dir, base / "cache", hist, log,
                       "--boot-target", "/dev/vda",
                       "--boot-append", "console=ttyS0 ais.final=poweroff ais.transport=multicast",
                       "--multicast", f"{GROUP}:{PORT}", "--multicast-interface", lab.address(0),
                       "--multicast-rate", "10")
        dhcp = dhcp_server(lab, 0, f"{url}/v1/boot/ipxe/${{mac}}", tmp_path / "leases")
        vms = {host: Vm(tmp_path / host, disk=disks[host], mac=mac, tap=lab.add_tap(f"tap{i}"), timeout=1500)
               for i, (host, mac) in enumerate(HOSTS.items())}
        try:
            codes = {host: vm.wait(timeout=1560) for host, vm in vms.items()}
            consoles = {host: vm.console() for host, vm in vms.items()}
        finally:
            for vm in vms.values():
                vm.close()
        dhcp.terminate()
        dhcp_log = dhcp.communicate(timeout=30)[1]
        server = lab.procs[0]
        server.terminate()
        server.communicate(timeout=30)
    for host, mac in HOSTS.items():
        console = consoles[host]
        assert codes[host] == 0, f"{host}:\n{console[-3000:]}"
        for line in (f"ais.host={host}", "by multicast", f"reinstalled {host}", "kexec: loading vmlinuz-",
                     f'firstboot: report_up: the server stored "up" for {host}'):
            assert line in console, f"{host}: {line!r} missing:\n{console[-3000:]}"
        assert "DHCPACK(eth0) " in dhcp_log and mac in dhcp_log  # its addresses came from dnsmasq

        hcd = next(h for h in site["site"].hosts if h.name == host)
        facts = target_facts(str(disks[host]), [f.path for f in hcd.files])
        assert facts["nevras"] == set(site["site"].configuration(hcd.scd).nevras)
        # rpm -Va: only slurm-client's %post-written slurm.conf (ais/client/verify.py), as recorded
        assert facts["rpm_va"].splitlines() == list(facts["record"]["rpm_va_allowed"])
        assert all(line.endswith(" /etc/slurm/slurm.conf") for line in facts["rpm_va"].splitlines())
        assert facts["fsck_rc"] == 0 and not facts["staging_left"]
        assert facts["record"]["image"]["transport"] == "multicast"
        assert facts["record"]["image"]["transport_fallback"] is None
        statuses = [(status, report.get("phase")) for status, report in stored_reports(hist, host)]
        assert statuses == [("ok", None), ("rebooting", "kexec"), ("up", None)], statuses
    stats = json.loads(re.findall(r"stream statistics: (\{.*\})", log_path.read_text())[-1])
    assert stats["unicast_bytes_sent"] == 0 and stats["multicast_bytes_sent"] > 0, stats
