#!/usr/bin/env bash
# Install what the test suite needs on a Debian 12 or Ubuntu machine.
# Run as root from anywhere; safe to re-run (apt is skipped when every
# package is already installed).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"

PACKAGES=(
    # message bus for the functional tests (private brokers, see
    # tests/fixtures/rabbitmq.py)
    rabbitmq-server
    # libvirt-python is built from source by pip
    libvirt-dev pkg-config gcc python3-dev
    # real QEMU guests under a private libvirtd (tests/realguest)
    libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu
    qemu-system-x86 qemu-utils busybox-static cpio
    # the libraries qemu-ga links, which tools/guest/build-guest-image.sh
    # copies into the guest-agent guest with qemu-ga (apt-get download)
    libglib2.0-0 libnuma1 liburing2 libudev1 libpcre2-8-0
    # systemd-analyze, which lints the shipped unit (tox -e systemd-verify),
    # and the systemd the gate and tests/fixtures/systemd.py run as PID 1
    # of private namespaces (unshare, nsenter); installing it does not
    # make it the machine's PID 1
    systemd util-linux
    # the throw-away CA of the TLS broker test (tests/fixtures/tls.py)
    openssl
    python3-venv
)

say() {
    echo "install-deps: $*"
}

if [[ $EUID -ne 0 ]]; then
    echo "install-deps: must run as root (sudo $0)" >&2
    exit 1
fi

# libvirt's QEMU driver refuses to load without this account; the Debian
# package that normally creates it (libvirt-daemon-system) also brings a
# system libvirtd, which the tests do not want.
if ! getent group libvirt-qemu >/dev/null; then
    say "creating group libvirt-qemu"
    groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
    say "creating user libvirt-qemu"
    useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt \
        --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi

missing=()
for package in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    say "all ${#PACKAGES[@]} apt packages already installed"
else
    # Package scripts would start a system RabbitMQ node (and libvirt
    # daemons) as services. The tests run private ones and need none of
    # them, so service starts are refused for the length of this install,
    # unless the machine already has a policy of its own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        say "refusing service starts during the install (policy-rc.d)"
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    say "apt-get update"
    apt-get update
    say "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y \
        --no-install-recommends "${missing[@]}"
fi

# A system node that is already running does not get in the way: test
# brokers use their own node names, ports and epmd. Say so, so that the
# 120 MB it holds is not a surprise.
if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
    say "note: a system RabbitMQ node is running; the tests do not use it"
fi

# The system python3, whose headers python3-dev provides for building
# libvirt-python in tox's environments.
if [[ ! -x $VENV/bin/tox ]]; then
    say "creating $VENV with tox"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet tox
else
    say "$VENV already has tox"
fi
say "done"
