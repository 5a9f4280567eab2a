#!/bin/bash
# Build the tiny guest used by the real-QEMU tests (tests/realguest).
#
# Usage: tools/guest/build-guest-image.sh [OUTDIR]
#
# Everything comes from Debian packages: the kernel from the
# linux-image-*-amd64 package that linux-image-amd64 currently depends on,
# userspace from busybox-static, the guest agent from qemu-guest-agent
# (with the libraries it links, from the packages tools/install-deps.sh
# installs).  Outputs in OUTDIR (default
# ${COMPUTE_AGENT_GUEST_CACHE:-$HOME/.cache/compute-agent/guest}):
#
#   vmlinuz               the kernel, booted directly by QEMU
#   initramfs-acpi.img    cooperative guest: powers off on the ACPI
#                         power button; each press logs "COMPUTE-AGENT-
#                         GUEST ACPI POWER BUTTON PRESS <n> OF <needed>" to
#                         the console (see write_acpi_handler)
#   initramfs-noacpi.img  ignoring guest: never reacts to ACPI
#   initramfs-agent.img   guest-agent guest: runs qemu-ga on the
#                         org.qemu.guest_agent.0 channel and ignores
#                         ACPI; a guest-shutdown through the agent logs
#                         "COMPUTE-AGENT-GUEST POWER-OFF BY GUEST AGENT"
#                         to the console, then powers off
#   disk.qcow2            small empty base image for tests to overlay
#                         (it is attached, never booted from)
#
# The guests print "COMPUTE-AGENT-GUEST READY" on the serial console
# (/dev/ttyS0) once userspace is up (for the agent guest: once qemu-ga
# holds its channel open), then idle forever.
#
# Boot them with the kernel command line
#
#   console=ttyS0 panic=-1 quiet
#
# console=ttyS0 sends kernel messages and /dev/console to the serial port,
# which the tests log to a file; panic=-1 makes a panicking guest (e.g. one
# whose /init died) reboot at once, so libvirt applies <on_reboot>, instead
# of spinning in panic(), which under TCG burns a host core until the test
# times out; quiet cuts the serial log from ~23 KB of boot messages to the
# lines the guest prints itself (it does not change the boot time).
#
# The work is skipped when all outputs exist and OUTDIR/stamp matches the
# inputs (kernel package and version, the versions of busybox-static,
# qemu-guest-agent and the agent's libraries, this script's checksum).  Run
# it as root: apt-get update runs when the package lists are missing or
# stale.
set -euo pipefail

OUTDIR=${1:-${COMPUTE_AGENT_GUEST_CACHE:-$HOME/.cache/compute-agent/guest}}
OUTPUTS=(vmlinuz initramfs-acpi.img initramfs-noacpi.img initramfs-agent.img
    disk.qcow2)
DISK_SIZE=16M
# The Debian packages of the libraries qemu-ga links (libc6 for libc, libm
# and the loader); they are copied from this machine into the agent guest.
AGENT_LIBRARY_PACKAGES=(libc6 libglib2.0-0 libnuma1 liburing2 libudev1
    libpcre2-8-0)
# virtio-serial, which carries the agent's channel, as modules in the order
# their dependencies need (the package has no modules.dep to read).
AGENT_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
    virtio_pci virtio_console)

die() {
    echo "build-guest-image: $*" >&2
    exit 1
}

# Set KERNEL_PKG and KERNEL_VER to the versioned kernel package that the
# candidate linux-image-amd64 pins, e.g. "Depends: linux-image-6.1.0-56-amd64
# (= 6.1.192-2)"; both stay empty when apt has no package lists.
resolve_kernel() {
    read -r KERNEL_PKG KERNEL_VER < <(
        apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
            sed -n 's/^Depends: \(linux-image-[^ ]*-amd64\) (= \([^)]*\)).*/\1 \2/p'
    ) || true
}

# Set AGENT_VER to the candidate version of qemu-guest-agent.
resolve_agent() {
    AGENT_VER=$(apt-cache show --no-all-versions qemu-guest-agent \
        2>/dev/null | sed -n 's/^Version: //p') || true
}

# apt-get download writes into the current directory.  apt's _apt sandbox
# user usually cannot reach it (OUTDIR is often under /root), and the .deb
# is only unpacked, never installed: download as root without the warning.
download_packages() {
    (cd "$1" && apt-get download -q -o APT::Sandbox::User=root \
        "$KERNEL_PKG=$KERNEL_VER" "qemu-guest-agent=$AGENT_VER" >&2)
}

print_outputs() {
    local name
    for name in "${OUTPUTS[@]}"; do
        echo "$OUTDIR/$name"
    done
}

# The PID 1 of all guests.  The ACPI variant differs only by carrying the
# two modules and the acpid handler, the agent variant by carrying qemu-ga
# and the virtio modules, so one script serves all three.  READY must
# mean the guest is fully set up: a power button press before acpid
# listens is lost, and a test would wrongly see a guest ignoring ACPI; a
# stop sent before qemu-ga holds its channel falls back to ACPI.
write_init() {
    cat >"$1" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so PID 1 starts without stdio.
exec </dev/console >/dev/console 2>&1

idle() {
    while :; do
        sleep 3600
    done
}

# Report on the serial port instead of READY, so a test waiting for READY
# fails with the reason in the guest's serial log.
fail() {
    echo "COMPUTE-AGENT-GUEST FAILED: $*" >/dev/ttyS0
    idle
}

# Run a command until it succeeds, for at most 5 s.
retry() {
    tries=50
    until "$@"; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || return 1
        sleep 0.1
    done
}

# Does process $1 hold every input event device open?
holds_all_event_devices() {
    [ "$(ls -l "/proc/$1/fd" | grep -c /dev/input/event)" -ge \
        "$(ls /sys/class/input | grep -c '^event')" ]
}

# Print the /dev/vportNpM whose virtio-serial port is named $1 (the
# number depends on device order; the name arrives from the host).
port_named() {
    for name in /sys/class/virtio-ports/*/name; do
        if [ "$(cat "$name" 2>/dev/null)" = "$1" ]; then
            port=${name%/name}
            echo "/dev/${port##*/}"
            return 0
        fi
    done
    return 1
}

# Does process $1 hold $2 open?
holds_open() {
    ls -l "/proc/$1/fd" 2>/dev/null | grep -q "$2\$"
}

if [ -x /etc/acpi/PWRF/00000080 ]; then
    # evdev exposes input devices as /dev/input/event*, button adds the
    # ACPI power button as one of them.
    insmod /lib/modules/evdev.ko || fail "insmod evdev.ko"
    insmod /lib/modules/button.ko || fail "insmod button.ko"
    # devtmpfs creates the nodes asynchronously, and acpid opens only the
    # event devices that exist when it starts.
    for event in /sys/class/input/event*; do
        retry test -e "/dev/input/${event##*/}" ||
            fail "no /dev/input/${event##*/}"
    done
    # The power button arrives as PWRF/00000080, which acpid maps to the
    # handler /etc/acpi/PWRF/00000080.  Events are logged to the console.
    acpid -f -l /dev/console &
    retry holds_all_event_devices $! || fail "acpid is not listening"
fi

if [ -x /usr/sbin/qemu-ga ]; then
    for module in $(cat /lib/modules/order); do
        insmod "/lib/modules/$module.ko" || fail "insmod $module.ko"
    done
    retry port_named org.qemu.guest_agent.0 >/dev/null ||
        fail "no virtio port named org.qemu.guest_agent.0"
    port=$(port_named org.qemu.guest_agent.0)
    retry test -e "$port" || fail "no $port"
    # No udev: make the name qemu-ga is told, as udev's rule would.
    mkdir -p /dev/virtio-ports
    ln -s "$port" /dev/virtio-ports/org.qemu.guest_agent.0
    # In the background rather than -d, so its pid tells when it holds
    # the channel: libvirt sees the agent connect at that moment.
    /usr/sbin/qemu-ga -m virtio-serial \
        -p /dev/virtio-ports/org.qemu.guest_agent.0 &
    retry holds_open $! "$port" || fail "qemu-ga does not hold $port"
fi

echo "COMPUTE-AGENT-GUEST READY" >/dev/ttyS0
idle
EOF
    chmod 755 "$1"
}

# Build one initramfs (cpio newc, gzip) from a staging directory.
pack_initramfs() {
    local root=$1 image=$2
    (cd "$root" &&
        find . -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --quiet) |
        gzip -9 -n >"$image"
}

# Copy a module out of the kernel package, decompressing it if the kernel
# ships compressed modules (busybox insmod wants a plain .ko).
copy_module() {
    local tree=$1 name=$2 dest=$3 found
    found=$(find "$tree/lib/modules" -name "$name.ko" -o -name "$name.ko.xz")
    [ -n "$found" ] || die "module $name not found in $KERNEL_PKG"
    case "$found" in
    *.xz) busybox xz -dc "$found" >"$dest/$name.ko" ;;
    *) cp "$found" "$dest/$name.ko" ;;
    esac
}

# acpid runs this on each press of the power button.  The guest powers
# off at the first press, or at the Nth with acpi_presses=N on the kernel
# command line: a test then decides when a guest that has taken a press
# goes off (by pressing again), e.g. only after libvirtd has restarted and
# re-attached to it.  Each press is logged through /dev/kmsg at KERN_CRIT
# (printed despite quiet, and before the power-off).
write_acpi_handler() {
    cat >"$1" <<'EOF'
#!/bin/sh
needed=1
for word in $(cat /proc/cmdline); do
    case "$word" in
    acpi_presses=*) needed=${word#acpi_presses=} ;;
    esac
done
# Handlers run one per press; presses are far apart, no lock is needed.
count=$(($(cat /run/acpi-presses 2>/dev/null || echo 0) + 1))
mkdir -p /run
echo "$count" >/run/acpi-presses
echo "<2>COMPUTE-AGENT-GUEST ACPI POWER BUTTON PRESS $count OF $needed" \
    >/dev/kmsg
if [ "$count" -ge "$needed" ]; then
    exec poweroff -f
fi
EOF
    chmod 755 "$1"
}

# qemu-ga's guest-shutdown runs /sbin/shutdown -h -P +0 "...": this one
# ignores its arguments and says on the console which path powered the
# guest off.  Through /dev/kmsg at KERN_CRIT the line is printed (despite
# quiet) before the power-off, where an echo to the serial port could be
# cut off in the UART's buffer.
write_agent_shutdown() {
    cat >"$1" <<'EOF'
#!/bin/sh
echo "<2>COMPUTE-AGENT-GUEST POWER-OFF BY GUEST AGENT (/sbin/shutdown)" \
    >/dev/kmsg
exec /bin/busybox poweroff -f
EOF
    chmod 755 "$1"
}

# Copy qemu-ga out of its package, with every library ldd lists and the
# loader, each at the path ldd names (symlinks followed).
copy_guest_agent() {
    local deb=$1 root=$2 tree library
    tree=$(dirname "$deb")/agent
    mkdir "$tree"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" ./usr/sbin/qemu-ga
    mkdir -p "$root/usr/sbin" "$root/sbin" "$root/var/run"
    cp "$tree/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
    if ldd "$tree/usr/sbin/qemu-ga" | grep 'not found'; then
        die "qemu-ga needs libraries this machine lacks" \
            "(${AGENT_LIBRARY_PACKAGES[*]}; see tools/install-deps.sh)"
    fi
    # "libc.so.6 => /lib/.../libc.so.6 (0x...)", "/lib64/ld-linux... (0x...)"
    for library in $(ldd "$tree/usr/sbin/qemu-ga" | sed -n \
        -e 's/.*=> \(\/[^ ]*\) .*/\1/p' \
        -e 's/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
        mkdir -p "$root$(dirname "$library")"
        cp -L "$library" "$root$library"
    done
    write_agent_shutdown "$root/sbin/shutdown"
}

build() {
    local work=$1 deb agent_deb tree root variant module
    mkdir "$work/download" "$work/kernel"
    if ! download_packages "$work/download"; then
        # Stale lists name a version the mirror no longer has.
        apt-get update -q
        resolve_kernel
        resolve_agent
        download_packages "$work/download"
    fi
    deb=$(echo "$work/download/${KERNEL_PKG}_"*.deb)
    agent_deb=$(echo "$work"/download/qemu-guest-agent_*.deb)
    [ -f "$deb" ] && [ -f "$agent_deb" ] ||
        die "apt-get download left no .deb in $work/download"

    # Only the kernel and the modules the guests load are needed:
    # extracting just those avoids unpacking ~400 MB of modules.
    tree=$work/kernel
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$tree" --wildcards './boot/vmlinuz-*' \
            '*/drivers/input/evdev.ko*' '*/drivers/acpi/button.ko*' \
            '*/drivers/virtio/*' '*/drivers/char/virtio_console.ko*'
    cp "$(echo "$tree"/boot/vmlinuz-*)" "$work/vmlinuz"

    for variant in acpi noacpi agent; do
        root=$work/root-$variant
        mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
        cp /bin/busybox "$root/bin/busybox"
        # /init needs its interpreter; it links the other applets itself.
        ln -s busybox "$root/bin/sh"
        write_init "$root/init"
        if [ "$variant" = acpi ]; then
            copy_module "$tree" evdev "$root/lib/modules"
            copy_module "$tree" button "$root/lib/modules"
            mkdir -p "$root/etc/acpi/PWRF"
            write_acpi_handler "$root/etc/acpi/PWRF/00000080"
        fi
        if [ "$variant" = agent ]; then
            for module in "${AGENT_MODULES[@]}"; do
                copy_module "$tree" "$module" "$root/lib/modules"
            done
            echo "${AGENT_MODULES[*]}" >"$root/lib/modules/order"
            copy_guest_agent "$agent_deb" "$root"
        fi
        pack_initramfs "$root" "$work/initramfs-$variant.img"
    done

    qemu-img create -q -f qcow2 "$work/disk.qcow2" "$DISK_SIZE"
}

# What the outputs are built from: a change to any of it forces a rebuild.
inputs_stamp() {
    echo "kernel=$KERNEL_PKG=$KERNEL_VER busybox-static=$BUSYBOX_VER" \
        "qemu-guest-agent=$AGENT_VER $LIBRARY_VERS" \
        "script=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
}

up_to_date() {
    local name
    for name in "${OUTPUTS[@]}"; do
        [ -f "$OUTDIR/$name" ] || return 1
    done
    [ "$(cat "$OUTDIR/stamp" 2>/dev/null)" = "$(inputs_stamp)" ]
}

main() {
    local tool name

    BUSYBOX_VER=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null) ||
        die "busybox-static is not installed (the guest needs a static busybox)"
    # A missing one is reported when ldd reads qemu-ga (copy_guest_agent).
    LIBRARY_VERS=$(dpkg-query -W -f='${Package}=${Version} ' \
        "${AGENT_LIBRARY_PACKAGES[@]}" 2>/dev/null) || true
    LIBRARY_VERS=${LIBRARY_VERS% }
    for tool in apt-get dpkg-deb cpio gzip qemu-img flock ldd; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done

    resolve_kernel
    resolve_agent
    if [ -z "$KERNEL_VER" ] || [ -z "$AGENT_VER" ]; then
        # A fresh machine may have no package lists at all.
        apt-get update -q
        resolve_kernel
        resolve_agent
    fi
    [ -n "$KERNEL_VER" ] ||
        die "cannot resolve the package behind linux-image-amd64"
    [ -n "$AGENT_VER" ] || die "cannot resolve qemu-guest-agent"

    mkdir -p "$OUTDIR"
    # Serialise concurrent builds (e.g. parallel test workers).
    exec 9>"$OUTDIR/.lock"
    flock 9

    if up_to_date; then
        print_outputs
        return
    fi

    WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    echo "build-guest-image: building from $KERNEL_PKG $KERNEL_VER" >&2
    build "$WORK"

    # Replace the outputs first and the stamp last, so an interrupted run
    # is rebuilt next time.  build may have moved to a newer kernel (after
    # apt-get update), which inputs_stamp now reports.
    rm -f "$OUTDIR/stamp"
    for name in "${OUTPUTS[@]}"; do
        mv -f "$WORK/$name" "$OUTDIR/$name"
    done
    inputs_stamp >"$OUTDIR/stamp"
    print_outputs
}

main
