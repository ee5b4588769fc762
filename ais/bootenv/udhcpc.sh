#!/bin/sh
# udhcpc's script in the AIS boot environment: apply what DHCP gave.
# udhcpc runs it with $1 = deconfig | bound | renew | leasefail | nak and the lease in
# the environment: interface, ip, subnet, router, dns.
# shellcheck disable=SC2154  # udhcpc sets interface and ip

case $1 in
    deconfig)
        ifconfig "$interface" 0.0.0.0 up
        ;;
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        if [ -n "${router:-}" ]; then
            while route del default dev "$interface" 2>/dev/null; do :; done
            for gw in $router; do
                route add default gw "$gw" dev "$interface" && break
            done
        fi
        : > /etc/resolv.conf
        for server in ${dns:-}; do
            echo "nameserver $server" >> /etc/resolv.conf
        done
        echo "ais-init: network_up: $interface has $ip (router ${router:-none})"
        ;;
    leasefail|nak)
        echo "ais-init: network_up: no DHCP lease on $interface ($1)"
        ;;
esac
exit 0
