#!/bin/sh
# /usr/lib/ais/firstboot: the installed system's first process after an AIS reinstall.
#
# `ais client record` writes this script and /var/lib/ais/firstboot.conf (mode 0600:
# server, host, token, image, generation), and the site CA as /var/lib/ais/site-ca.pem when
# the reinstall had one, into the target; the boot environment then kexecs into the
# installed kernel with init=/usr/lib/ais/firstboot. In order:
#   mount_pseudo  /proc, /sys, /dev, /run, /tmp (what the initramfs did not hand over)
#   network_up    the first network interface by DHCP (busybox udhcpc; this script is
#                 also its hook: udhcpc calls it with $1 = deconfig | bound | renew ...)
#   report_up     POST {"status": "up", image, generation, phases: [{"name": "up",
#                 "start": kernel start, "end": now}]} to the server with the host's token.
#                 An https:// server: with curl, which trusts the site CA only (--cacert);
#                 else with busybox wget, whose own TLS does not check the server's
#                 certificate (said on the console; a busybox that hands TLS to an openssl
#                 on PATH gets SSL_CERT_FILE=the site CA). An http:// server: busybox nc.
#   hand_over     ais.final=poweroff|reboot on the command line: that; else exec the
#                 system's init (ais.init= on the command line, else /sbin/init), else a
#                 shell on the console. PID 1 never exits.
# A failure to report is said on the console ("firstboot: ...") and does not stop the boot.
# Tools: busybox (/usr/bin/busybox or /bin/busybox) when the system has one, else the
# system's own commands (ip, udhcpc, nc, wget) by name; curl when the system has it.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
CONF=/var/lib/ais/firstboot.conf
BB=
for candidate in /usr/bin/busybox /bin/busybox; do
    [ -x "$candidate" ] && { BB=$candidate; break; }
done

say() {
    echo "firstboot: $*" > /dev/console 2>/dev/null || echo "firstboot: $*"
}

dhcp_hook() {
    # shellcheck disable=SC2154  # udhcpc sets interface, ip, subnet, router
    case $1 in
        deconfig) $BB ip addr flush dev "$interface"; $BB ip link set "$interface" up ;;
        bound|renew)
            $BB ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
            for gw in ${router:-}; do $BB route add default gw "$gw" dev "$interface" && break; done
            say "network_up: $interface has $ip"
            ;;
    esac
    exit 0
}

cmdline_value() {
    value=
    # shellcheck disable=SC2013  # words separated by blanks: splitting is what we want
    for word in $(cat /proc/cmdline); do
        case $word in "$1"=*) value=${word#*=} ;; esac
    done
    printf '%s' "$value"
}

mount_pseudo() {
    $BB mkdir -p /proc /sys /dev /run /tmp
    $BB grep -q ' /proc ' /proc/mounts 2>/dev/null || $BB mount -t proc proc /proc
    $BB grep -q ' /sys ' /proc/mounts || $BB mount -t sysfs sysfs /sys
    $BB grep -q ' /dev ' /proc/mounts || $BB mount -t devtmpfs devtmpfs /dev
    $BB grep -q ' /run ' /proc/mounts || $BB mount -t tmpfs -o mode=0755 tmpfs /run
    $BB grep -q ' /tmp ' /proc/mounts || $BB mount -t tmpfs tmpfs /tmp
}

network_up() {
    $BB ip link set lo up
    for path in /sys/class/net/*; do
        name=${path##*/}
        [ "$name" = lo ] && continue
        $BB udhcpc -i "$name" -f -q -n -t 5 -T 2 -s /usr/lib/ais/firstboot > /dev/null 2>&1 && return 0
    done
    return 1
}

# POST $body to the server's report route once: 0 when it answered 201; $answer says what came back.
post_report() {
    url="$SERVER_URL/v1/hosts/$HOST_PATH/report"
    case $SERVER_SCHEME:$VIA in
        https:curl)
            answer=$(curl -sS --max-time 20 --cacert "$SITE_CA" -o /dev/null -w 'HTTP %{http_code}' \
                -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" --data-binary "$body" \
                "$url" 2>&1)
            [ "$answer" = "HTTP 201" ] && return 0
            # no answer at all (HTTP 000): curl's first line says why (its next ones, how to fix it)
            [ "$answer" = "${answer%HTTP 000}" ] || answer=$(printf '%s\n' "$answer" | $BB head -n 1)
            return 1
            ;;
        https:wget)
            # busybox wget fails (exit 1, "server returned error: HTTP/1.1 ...") on anything but 2xx
            # (busybox 1.35's wget has no -T: timeout bounds it)
            answer=$(SSL_CERT_FILE=$SITE_CA $BB timeout 30 $BB wget -q -O - --header "Authorization: Bearer $TOKEN" \
                --header "Content-Type: application/json" --post-data "$body" "$url" 2>&1) &&
                case $answer in *'"stored"'*) ;; *) false ;; esac
            ;;
        *)
            # nc half-closes the connection at the end of its input; `ais serve` still answers.
            answer=$(printf 'POST /v1/hosts/%s/report HTTP/1.0\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
                "$HOST_PATH" "$SERVER_ADDRESS" "$SERVER_PORT" "$TOKEN" "${#body}" "$body" |
                $BB nc -w 10 "$SERVER_ADDRESS" "$SERVER_PORT" 2>&1 | $BB head -n 1)
            case $answer in "HTTP/1."?" 201"*) ;; *) false ;; esac
            ;;
    esac
}

# How an https:// report goes: curl with the site CA when there are both, else busybox wget.
choose_client() {
    VIA=nc
    [ "$SERVER_SCHEME" = https ] || return 0
    if command -v curl > /dev/null 2>&1 && [ -r "$SITE_CA" ]; then
        VIA=curl
        return 0
    fi
    VIA=wget
    if command -v openssl > /dev/null 2>&1 && [ -r "$SITE_CA" ]; then
        say "report_up: no curl: busybox wget, through openssl s_client with SSL_CERT_FILE=$SITE_CA"
    else
        say "report_up: busybox wget does not check the server's certificate (no curl with the site CA here)"
    fi
}

report_up() {
    # shellcheck disable=SC1090  # written by `ais client record`
    . "$CONF" || return 1
    up=$(cut -d' ' -f1 /proc/uptime)
    now=$($BB date +%s)
    start=$($BB awk "BEGIN { printf \"%.3f\", $now - $up }")
    body="{\"status\":\"up\",\"image\":$IMAGE_JSON,\"generation\":$GENERATION_JSON,\"phases\":[{\"name\":\"up\",\"start\":$start,\"end\":$now}]}"
    choose_client
    tries=0
    while :; do
        if post_report; then
            say "report_up: the server stored \"up\" for $HOST"
            return 0
        fi
        answer=$(printf '%s' "$answer" | $BB tail -n 1)
        tries=$((tries + 1))
        [ "$tries" -lt 5 ] || { say "report_up: the server did not take the report: ${answer:-no answer}"; return 1; }
        $BB sleep 2
    done
}

# Before a power-off: nothing unwritten, the root filesystem clean (read-only).
leave_clean() {
    $BB sync
    $BB mount -o remount,ro / || say "could not remount / read-only"
}

hand_over() {
    case $(cmdline_value ais.final) in
        poweroff) say "powering off (ais.final=poweroff)"; leave_clean; $BB poweroff -f ;;
        reboot) say "rebooting (ais.final=reboot)"; leave_clean; $BB reboot -f ;;
    esac
    init=$(cmdline_value ais.init)
    for candidate in "$init" /sbin/init; do
        [ -n "$candidate" ] && [ -x "$candidate" ] && exec "$candidate"
    done
    while :; do
        say "no init to hand over to: a shell on the console"
        $BB setsid $BB cttyhack $BB sh -l || $BB sh
    done
}

case ${1:-} in
    deconfig|bound|renew|leasefail|nak) [ -n "${interface:-}" ] && dhcp_hook "$1" ;;
esac

mount_pseudo
say "the installed system is up (kernel $($BB uname -r))"
if network_up; then
    report_up || true
else
    say "network_up: no DHCP lease on any interface: the server was not told"
fi
hand_over
