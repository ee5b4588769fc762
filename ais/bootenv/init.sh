#!/bin/sh
# /init of the AIS boot environment (made by `ais bootenv build`): bring the machine
# up, then run ais-boot, which reinstalls the disk and reports to the server.
#
# Named steps, in order. Each prints "ais-init: <step>: ..." on the console; a step
# that fails stops the boot with a banner naming the step and why, and once the server
# has answered, the server is told too (a "failed" report with the step as its phase):
#   mount_pseudo     /proc, /sys, /dev (devtmpfs), /run, /tmp
#   install_applets  busybox's applets as symlinks (the tools of e2fsprogs and rpm stay)
#   load_modules     disk, NIC and ext4 modules, in dependency order (/etc/ais/modules)
#   network_up       the boot interface (ais.interface=, else the first that appears) by DHCP
#   find_server      GET <ais.server>/v1/health answers 200, bounded retries (10 x 2 s); an
#                    https:// server must show a certificate the pinned site CA
#                    (/etc/ais/site-ca.pem) signed
#   wait_for_target  the disk ais.target= exists, bounded wait
#   run_ais_boot     ais-boot (settings from the kernel command line, docs/client.md)
# When ais-boot returns (after a reinstall it kexecs into the installed system, or reboots,
# unless ais.reboot=no):
#   ais.final=shell (default) a shell on the console | poweroff | reboot
# /init must never exit (the kernel panics): every path ends in one of those three.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
FINAL=shell
SERVER_UP=
# Python's connection to <ais.server>: https:// trusts the pinned site CA and nothing else.
CONNECT='import http.client, os, ssl, sys, urllib.parse
def connect(server, timeout):
    url = urllib.parse.urlsplit(server)
    if url.scheme != "https":
        return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    if not os.path.exists("/etc/ais/site-ca.pem"):
        sys.exit(server + ": https:// needs the site CA, and this boot environment has none (/etc/ais/site-ca.pem: "
                 "ais site init, then ais bootenv build)")
    context = ssl.create_default_context(cafile="/etc/ais/site-ca.pem")
    return http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=context)
'

say() {
    echo "ais-init: $*"
}

# The value of KEY=... on the kernel command line (last one wins), or nothing.
cmdline_value() {
    value=
    # the command line is words separated by blanks, so splitting is what we want
    # shellcheck disable=SC2013
    for word in $(cat /proc/cmdline); do
        case $word in
            "$1"=*) value=${word#*=} ;;
        esac
    done
    printf '%s' "$value"
}

finish() {
    case $FINAL in
        poweroff) say "powering off (ais.final=poweroff)"; sync; poweroff -f ;;
        reboot) say "rebooting (ais.final=reboot)"; sync; reboot -f ;;
    esac
    while :; do
        say "a shell on the console (ais.final=shell); leave it to start another"
        setsid cttyhack sh -l || sh
    done
}

# Tell the server of a failure of a step of this init, when it can be told: it answered
# /v1/health, and the command line names the host and carries its token. (ais-boot
# reports the failures of its own steps.)
tell_server() {
    host=$(cmdline_value ais.host)
    token=$(cmdline_value ais.token)
    [ -n "$SERVER_UP" ] && [ -n "$host" ] && [ -n "$token" ] || return 1
    AIS_TOKEN=$token python3.11 -I -c "$CONNECT"'import json
server, host, phase, message = sys.argv[1:5]
body = json.dumps({"status": "failed", "phase": phase, "message": message[:4000]}).encode()
conn = connect(server, 10)
conn.request("POST", "/v1/hosts/" + urllib.parse.quote(host) + "/report", body=body,
             headers={"Authorization": "Bearer " + os.environ["AIS_TOKEN"], "Content-Type": "application/json"})
answer = conn.getresponse()
print(answer.read().decode(errors="replace").strip())
sys.exit(answer.status != 201)' "$SERVER" "$host" "$1" "$2" > /run/ais-told 2>&1
}

fail() {
    step=$1
    shift
    if tell_server "$step" "$*"; then
        told="the server was told: $(cat /run/ais-told)"
    else
        told="the server could not be told"
    fi
    say "============================================================"
    say "BOOT FAILED in step '$step': $*"
    say "nothing was written to any disk; $told"
    say "============================================================"
    finish
}

# Before install_applets, so busybox is named (its --install reads /proc/self/exe).
mount_pseudo() {
    /bin/busybox mkdir -p /proc /sys /dev /run /tmp &&
        /bin/busybox mount -t proc proc /proc &&
        /bin/busybox mount -t sysfs sysfs /sys &&
        { /bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null || /bin/busybox grep -q ' /dev ' /proc/mounts; } &&
        /bin/busybox mount -t tmpfs -o mode=0755 tmpfs /run &&
        /bin/busybox mount -t tmpfs tmpfs /tmp
}

install_applets() {
    /bin/busybox --install -s
}

load_modules() {
    release=$(uname -r)
    loaded=0
    while read -r module; do
        if insmod "/lib/modules/$release/$module.ko" 2>/dev/null; then
            loaded=$((loaded + 1))
        elif ! grep -q "^$(basename "$module" | tr - _) " /proc/modules; then
            say "load_modules: $module did not load (no such hardware?)"
        fi
    done < /etc/ais/modules
    say "load_modules: $loaded modules loaded"
}

boot_interface() {
    iface=$(cmdline_value ais.interface)
    if [ -n "$iface" ]; then
        printf '%s' "$iface"
        return
    fi
    for path in /sys/class/net/*; do
        name=${path##*/}
        [ "$name" = lo ] || { printf '%s' "$name"; return; }
    done
}

network_up() {
    ip link set lo up
    tries=0
    IFACE=$(boot_interface)
    while [ -z "$IFACE" ] || [ ! -e "/sys/class/net/$IFACE" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 20 ] || return 1
        sleep 0.5
        IFACE=$(boot_interface)
    done
    say "network_up: DHCP on $IFACE ($(cat "/sys/class/net/$IFACE/address"))"
    udhcpc -i "$IFACE" -f -q -n -t 10 -T 2 -s /etc/ais/udhcpc.sh
}

# GET <server>/v1/health with Python's http.client (busybox-static's wget crashes in glibc's resolver).
health() {
    python3.11 -I -c "$CONNECT"'
conn = connect(sys.argv[1], 5)
conn.request("GET", "/v1/health")
answer = conn.getresponse()
print(answer.read().decode(errors="replace").strip())
sys.exit(answer.status != 200)' "$SERVER" > /run/ais-health 2>/run/ais-health.err
}

find_server() {
    tries=0
    until health; do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || return 1
        say "find_server: $SERVER does not answer yet (try $tries of 10): $(tail -n 1 /run/ais-health.err)"
        sleep 2
    done
    say "find_server: $SERVER answers: $(cat /run/ais-health)"
    SERVER_UP=yes
}

wait_for_target() {
    tries=0
    until [ -b "$TARGET" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 40 ] || return 1
        sleep 0.5
    done
}

run_ais_boot() {
    # The console is a serial line read into logs: progress as timestamped lines, not bars
    # (AIS_PROGRESS=bars on the kernel command line asks for bars).
    export AIS_PROGRESS="${AIS_PROGRESS:-lines}"
    # Without ais.host=, ais.interface= or BOOTIF=, the interface DHCP used identifies the host.
    if [ -z "$(cmdline_value ais.host)$(cmdline_value ais.interface)$(cmdline_value BOOTIF)" ]; then
        AIS=/usr/bin/ais AIS_SINCE_BOOT=1 ais-boot --interface "$IFACE"
    else
        AIS=/usr/bin/ais AIS_SINCE_BOOT=1 ais-boot
    fi
}

main() {
    mount_pseudo || fail mount_pseudo "cannot mount /proc, /sys, /dev, /run or /tmp"
    install_applets || fail install_applets "busybox --install failed"
    say "AIS boot environment $(cat /etc/ais/bootenv-key), kernel $(uname -r)"
    FINAL=$(cmdline_value ais.final)
    case $FINAL in
        shell|poweroff|reboot) ;;
        "") FINAL=shell ;;
        *) say "ais.final must be shell, poweroff or reboot, not $FINAL: using shell"; FINAL=shell ;;
    esac
    SERVER=$(cmdline_value ais.server)
    TARGET=$(cmdline_value ais.target)
    [ -n "$SERVER" ] || fail settings "no ais.server= on the kernel command line"
    [ -n "$TARGET" ] || fail settings "no ais.target= on the kernel command line"
    load_modules
    network_up || fail network_up "no address by DHCP on ${IFACE:-any interface} (is a cable in, a DHCP server there?)"
    find_server || fail find_server "the AIS server $SERVER does not answer GET /v1/health"
    wait_for_target || fail wait_for_target "the target disk $TARGET did not appear (driver? name?)"
    say "run_ais_boot: reinstalling $TARGET from $SERVER"
    if run_ais_boot; then
        say "ais-boot finished: reinstalled"
    else
        say "ais-boot failed with exit code $? (its message is above; the server was told if it could be)"
    fi
    finish
}

main
