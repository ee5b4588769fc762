#!/bin/sh
# /init of the demo site's installed-system initramfs (made by aislab/demo_kernel.py,
# shipped by packages/kernel.spec as /boot/initrd.img-<release>): mount the root disk
# named on the kernel command line and hand the machine to its init.
#
# Command line: root=DEV (required: /dev/..., LABEL=... or UUID=...), rootfstype=
# (default ext4), rw | ro (default ro), init= (default /sbin/init), ais.final=
# (poweroff | reboot | shell, default shell: what happens after a failure).
# Steps, one line each on the console ("initrd: ..."); a failure prints the banner
# "initrd: FAILED: <why>" and follows ais.final=, so a test VM ends instead of hanging.
# /init must never exit (the kernel panics): every path ends in switch_root or finish.

PATH=/bin
export PATH
FINAL=shell

say() {
    echo "initrd: $*"
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

# rw or ro, whichever comes last on the command line (ro when neither).
root_mode() {
    mode=ro
    # shellcheck disable=SC2013
    for word in $(cat /proc/cmdline); do
        case $word in
            rw|ro) mode=$word ;;
        esac
    done
    printf '%s' "$mode"
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

fail() {
    say "FAILED: $*"
    finish
}

mount_pseudo() {
    /bin/busybox mkdir -p /proc /sys /dev /newroot &&
        /bin/busybox mount -t proc proc /proc &&
        /bin/busybox --install -s /bin &&
        mount -t sysfs sysfs /sys &&
        { mount -t devtmpfs devtmpfs /dev 2>/dev/null || grep -q ' /dev ' /proc/mounts; }
}

read_final() {
    FINAL=$(cmdline_value ais.final)
    case $FINAL in
        shell|poweroff|reboot) ;;
        "") FINAL=shell ;;
        *) say "ais.final must be shell, poweroff or reboot, not $FINAL: using shell"; FINAL=shell ;;
    esac
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
    done < /etc/modules
    say "load_modules: $loaded modules loaded"
}

# The block device root= names, once it exists (LABEL= and UUID= through findfs); nothing before.
root_device() {
    case $ROOT in
        LABEL=*|UUID=*) findfs "$ROOT" 2>/dev/null ;;
        *) [ -b "$ROOT" ] && printf '%s' "$ROOT" ;;
    esac
}

wait_for_root() {
    tries=0
    until DEVICE=$(root_device) && [ -n "$DEVICE" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 20 ] || return 1
        sleep 0.5
    done
}

# /dev, /proc and /sys move into the new root where it has a place for them; else they go.
move_pseudo() {
    for fs in /dev /proc /sys; do
        if [ -d "/newroot$fs" ]; then
            mount --move "$fs" "/newroot$fs" || return 1
        else
            umount -l "$fs" || return 1
        fi
    done
}

main() {
    mount_pseudo || fail "cannot mount /proc, /sys or /dev"
    read_final
    say "kernel $(uname -r), command line: $(cat /proc/cmdline)"
    ROOT=$(cmdline_value root)
    FSTYPE=$(cmdline_value rootfstype)
    INIT=$(cmdline_value init)
    MODE=$(root_mode)
    [ -n "$ROOT" ] || fail "no root= on the kernel command line"
    load_modules
    say "wait_for_root: $ROOT"
    wait_for_root || fail "the root device $ROOT did not appear in 10 s (driver? name?)"
    say "mount_root: $DEVICE (${FSTYPE:=ext4}, $MODE) on /newroot"
    error=$(mount -t "$FSTYPE" -o "$MODE" "$DEVICE" /newroot 2>&1) ||
        fail "cannot mount $DEVICE ($FSTYPE, $MODE): $error"
    if [ ! -e "/newroot${INIT:=/sbin/init}" ] && [ ! -L "/newroot$INIT" ]; then
        umount /newroot
        fail "the root filesystem on $DEVICE has no $INIT"
    fi
    move_pseudo || fail "cannot move /dev, /proc and /sys into the new root"
    echo "initrd: switch_root: $INIT"
    exec switch_root /newroot "$INIT"
}

main
